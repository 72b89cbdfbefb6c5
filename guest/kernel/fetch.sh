#!/bin/bash
# Fetches the guest kernel: Debian's cloud kernel (linux-image-*-cloud-amd64),
# downloaded with apt-get and unpacked with dpkg-deb, into a cache outside
# the work tree keyed by the package's version, so a second run is instant.
#
#   guest/kernel/fetch.sh [CACHE_DIR]   prints the kernel directory on stdout
#
# The directory holds:
#   vmlinuz      the compressed kernel (QEMU boots it)
#   vmlinux      the uncompressed ELF Firecracker needs on x86 (DESIGN.md §3)
#   config       the kernel's build configuration
#   modules/     lib/modules/<release>/ with modules.dep (depmod ran on it)
#   release      the kernel release, e.g. 6.1.0-56-cloud-amd64
#   version      the Debian package version, e.g. 6.1.192-2
set -euo pipefail

log() { printf '%s vmlet: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cache=${1:-${VMLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmlet}}
meta=${VMLET_KERNEL_PACKAGE:-linux-image-cloud-amd64}

# The metapackage names the current kernel package; its version keys the cache.
package=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$package" ] || die "apt-cache knows no $meta; run 'apt-get update' (./vmlet deps does)"
version=$(apt-cache show "$package" | awk '/^Version:/ { print $2; exit }')
release=${package#linux-image-}
dir=$cache/kernel-$release-$version
if [ -f "$dir/.complete" ]; then
    echo "$dir"
    exit 0
fi

for tool in dpkg-deb lz4 depmod; do
    command -v "$tool" >/dev/null || [ -x "/sbin/$tool" ] ||
        die "$tool is missing; install it (./vmlet deps installs dpkg, lz4 and kmod)"
done

log "fetching the guest kernel $package $version into $dir"
work=$(mktemp -d "$cache/.kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$package" >/dev/null 2>"$work/download.log") || {
    cat "$work/download.log" >&2
    die "apt-get download $package failed; check this machine's apt sources"
}
dpkg-deb -x "$work"/*.deb "$work/root"
mkdir -p "$work/out"
cp "$work/root/boot/vmlinuz-$release" "$work/out/vmlinuz"
cp "$work/root/boot/config-$release" "$work/out/config"
mkdir -p "$work/out/modules"
mv "$work/root/lib/modules/$release" "$work/out/modules/$release"
# depmod wants <base>/lib/modules/<release>; give it that shape.
mkdir -p "$work/depmod/lib"
ln -s "$work/out/modules" "$work/depmod/lib/modules"
PATH=$PATH:/sbin depmod -b "$work/depmod" "$release"
[ -f "$work/out/modules/$release/modules.dep" ] || die "depmod made no modules.dep"
echo "$release" >"$work/out/release"
echo "$version" >"$work/out/version"

# vmlinux: the bzImage's payload is one compressed stream after the setup
# code; find its magic and decompress from there (trailing bytes ignored).
extract() { # MAGIC-AS-PRINTF DECOMPRESSOR...
    local magic=$1 offset
    shift
    for offset in $(LC_ALL=C grep -abo "$(printf "$magic")" "$work/out/vmlinuz" | cut -d: -f1); do
        tail -c +$((offset + 1)) "$work/out/vmlinuz" | "$@" >"$work/out/vmlinux" 2>/dev/null || true
        if [ "$(head -c 4 "$work/out/vmlinux" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; then
            return 0
        fi
    done
    return 1
}
extract '\002\041\114\030' lz4 -dc ||
    extract '\037\213\010' gzip -dc ||
    extract '\3757zXZ\000' xz -dc ||
    extract '(\265/\375' zstd -dc ||
    die "could not find the uncompressed kernel inside vmlinuz"

rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/.complete"
log "guest kernel $release ready ($(du -sh "$dir" | cut -f1))"
echo "$dir"
