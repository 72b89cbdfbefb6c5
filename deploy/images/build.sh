#!/usr/bin/env bash
# build.sh: the container images of vmlet, made on this machine from its own
# files (no base image, no registry): for each program a minimal root file
# system holding the binary and the shared libraries ldd names, CA
# certificates, busybox (for the healthcheck's wget), a passwd/group with
# the user vmlet (uid 10001); `docker import`ed as vmlet/<name>:<version>.
#
#   deploy/images/build.sh [NAME...]     (default: all; names below)
#
# Names: bus k8s-watcher image-builder vm-launcher prober status-reporter
# kubelet-api redis. vm-launcher also holds QEMU (its libraries, firmware
# from /usr/share/qemu and /usr/share/seabios, its TCG module), mkfs.ext4 (it makes each
# pod's scratch disk) and the guest kernel and initramfs of the build; its
# network work (nftables, links, namespaces) goes through libraries, not
# programs; it also holds vmlet-vmm-host (docker-compose runs it from this
# image, see services/vm-launcher/README.md). redis is Debian's redis-server.
#
# Idempotent: each image carries the sha256 of its root file system as the
# label vmlet.rootfs; an image whose label matches is kept, so a second run
# costs only the staging (about a second per image).
#
# Environment: VMLET_BIN_DIR (default ./build/bin), VMLET_KERNEL and
# VMLET_INITRAMFS (default: the build's, from its CMakeCache.txt),
# DOCKER_HOST (which dockerd; the docker CLI reads it), VMLET_IMAGE_VERSION
# (default: the project's version from CMakeLists.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VMLET_BIN_DIR:-$ROOT/build/bin}
VERSION=${VMLET_IMAGE_VERSION:-$(sed -n 's/^project(vmlet VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")}
ALL="bus k8s-watcher image-builder vm-launcher prober status-reporter kubelet-api redis"
UID_VMLET=10001

log() { printf '%s images: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker not found; install docker.io (apt-get install docker.io)"
docker version -f '{{.Server.Version}}' >/dev/null 2>&1 ||
    die "no dockerd answers${DOCKER_HOST:+ at $DOCKER_HOST}; start one or set DOCKER_HOST"
[ -d "$BIN" ] || die "no binaries in $BIN; build first (./vmlet build) or set VMLET_BIN_DIR"

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$BIN/../CMakeCache.txt" 2>/dev/null | head -n1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmlet-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# put STAGE FILE [AS]: FILE (symlinks followed) into STAGE at AS (default
# FILE with its directory resolved, so /lib/x/y lands in /usr/lib/x/y:
# the image is merged-/usr as Debian 12 is).
put() {
    local stage=$1 src=$2 dst=${3:-}
    if [ -z "$dst" ]; then
        dst="$(realpath "$(dirname "$src")")/$(basename "$src")"
    fi
    mkdir -p "$stage$(dirname "$dst")"
    cp -L --preserve=mode "$src" "$stage$dst"
}

# libs STAGE PROGRAM...: the shared libraries ldd names for each PROGRAM.
libs() {
    local stage=$1 p l
    shift
    for p in "$@"; do
        ldd "$p" >"$WORK/ldd" 2>&1 || die "ldd $p failed: $(cat "$WORK/ldd")"
        ! grep -q "not found" "$WORK/ldd" || die "$p: libraries missing: $(grep 'not found' "$WORK/ldd")"
        for l in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$WORK/ldd"); do
            put "$stage" "$l"
        done
    done
}

# base STAGE: what every image holds.
base() {
    local s=$1 d
    mkdir -p "$s"/usr/{bin,sbin,lib,lib64} "$s"/{etc,tmp,var/tmp,proc,sys,dev,run}
    ln -s usr/bin "$s/bin"
    ln -s usr/sbin "$s/sbin"
    ln -s usr/lib "$s/lib"
    ln -s usr/lib64 "$s/lib64"
    chmod 1777 "$s/tmp" "$s/var/tmp"
    cat >"$s/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
vmlet:x:$UID_VMLET:$UID_VMLET:vmlet:/var/lib/vmlet:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
    cat >"$s/etc/group" <<EOF
root:x:0:
vmlet:x:$UID_VMLET:
nogroup:x:65534:
EOF
    echo "hosts: files dns" >"$s/etc/nsswitch.conf"
    put "$s" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
    [ -x /bin/busybox ] || die "busybox missing (apt-get install busybox-static): the healthchecks use its wget"
    put "$s" /bin/busybox /usr/bin/busybox
    ln -s busybox "$s/usr/bin/sh"
    ln -s busybox "$s/usr/bin/wget"
    for d in /var/lib/vmlet /var/lib/vmlet/images /var/lib/vmlet/kubelet-api /data; do
        mkdir -p "$s$d"
        chown "$UID_VMLET:$UID_VMLET" "$s$d"
    done
}

# stage NAME STAGE: fills STAGE for image NAME; prints the docker import
# --change lines, one per line.
stage() {
    local name=$1 s=$2 prog
    base "$s"
    case $name in
    redis)
        prog=$(command -v redis-server) || die "redis-server missing (apt-get install redis-server)"
        put "$s" "$prog" /usr/bin/redis-server
        libs "$s" "$prog"
        echo "USER $UID_VMLET:$UID_VMLET"
        echo "WORKDIR /data"
        echo 'ENTRYPOINT ["/usr/bin/redis-server"]'
        return
        ;;
    esac
    prog=$BIN/vmlet-$name
    [ -x "$prog" ] || die "$prog missing; build first (make -C $(dirname "$BIN"))"
    put "$s" "$prog" "/usr/bin/vmlet-$name"
    libs "$s" "$prog"
    echo "ENTRYPOINT [\"/usr/bin/vmlet-$name\"]"
    if [ "$name" != vm-launcher ]; then
        echo "USER $UID_VMLET:$UID_VMLET"
        return
    fi
    # The launcher runs as root (taps, namespaces, nftables) and holds what
    # it execs: QEMU and mkfs.ext4, and what a pod's VM boots. Its image is
    # also vmlet-vmm-host's, which starts the VMMs from the same files.
    local qemu mkfs kernel initramfs
    put "$s" "$BIN/vmlet-vmm-host" /usr/bin/vmlet-vmm-host
    libs "$s" "$BIN/vmlet-vmm-host"
    qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    mkfs=$(command -v mkfs.ext4) || die "mkfs.ext4 missing (apt-get install e2fsprogs)"
    put "$s" "$qemu" /usr/bin/qemu-system-x86_64
    put "$s" "$mkfs" /usr/sbin/mkfs.ext4
    [ -f /etc/mke2fs.conf ] && put "$s" /etc/mke2fs.conf /etc/mke2fs.conf
    # Debian builds TCG as a module QEMU loads at start ("could not load
    # module for type 'tcg-accel-ops'" without it); the other modules are
    # devices and displays a microvm does not use.
    local mod=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
    [ -f "$mod" ] || die "$mod missing (QEMU's TCG module; reinstall qemu-system-x86)"
    put "$s" "$mod"
    libs "$s" "$qemu" "$mkfs" "$mod"
    mkdir -p "$s/usr/share"
    cp -rL /usr/share/qemu "$s/usr/share/qemu"
    cp -rL /usr/share/seabios "$s/usr/share/seabios"
    kernel=${VMLET_KERNEL:-$(cache_value VMLET_KERNEL_DIR)/vmlinuz}
    initramfs=${VMLET_INITRAMFS:-$(cache_value VMLET_INITRAMFS)}
    [ -f "$kernel" ] || die "guest kernel '$kernel' missing; set VMLET_KERNEL or build (guest/kernel/fetch.sh)"
    [ -f "$initramfs" ] || die "guest initramfs '$initramfs' missing; set VMLET_INITRAMFS or build the target vmlet_initramfs"
    put "$s" "$kernel" /usr/lib/vmlet/vmlinuz
    put "$s" "$initramfs" /usr/lib/vmlet/initramfs.cpio
    mkdir -p "$s/var/lib/vmlet/vms" "$s/var/lib/vmlet/templates" "$s/var/log/pods" "$s/run/netns" "$s/run/vmlet"
    # QEMU saves and loads templates through `exec:cat` (QEMU 7.2 has no
    # file: migration), which it runs with /bin/sh -c (docs/templates.md).
    mkdir -p "$s/bin"
    ln -sf /usr/bin/busybox "$s/bin/sh"
    ln -sf busybox "$s/usr/bin/cat"
    echo "ENV VMLET_KERNEL=/usr/lib/vmlet/vmlinuz"
    echo "ENV VMLET_INITRAMFS=/usr/lib/vmlet/initramfs.cpio"
    echo "USER 0:0"
}

# rootfs_sum STAGE: the sha256 of the tree: names, modes, owners, link
# targets and contents.
rootfs_sum() {
    (cd "$1" && find . -printf '%p %m %U %G %y %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64
}

build_one() {
    local name=$1 s=$WORK/$1 ref=vmlet/$1:$VERSION sum have t0=$SECONDS
    local -a changes=()
    stage "$name" "$s" >"$WORK/$name.changes"
    mapfile -t changes <"$WORK/$name.changes"
    sum=$(rootfs_sum "$s")
    have=$(docker image inspect -f '{{index .Config.Labels "vmlet.rootfs"}}' "$ref" 2>/dev/null || true)
    if [ "$have" = "$sum" ]; then
        log "$ref: up to date (rootfs ${sum:0:12})"
        rm -rf "$s"
        return
    fi
    local -a args=(--change "LABEL vmlet.rootfs=$sum" --change "LABEL vmlet.version=$VERSION"
        --change "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin")
    local c
    for c in "${changes[@]}"; do args+=(--change "$c"); done
    log "$ref: importing $(du -sh "$s" | cut -f1) (rootfs ${sum:0:12})"
    tar --numeric-owner -C "$s" -cf - . | docker import "${args[@]}" - "$ref" >/dev/null ||
        die "$ref: docker import failed"
    rm -rf "$s"
    log "$ref: built in $((SECONDS - t0)) s"
}

names=${*:-$ALL}
n=0 total=$(echo $names | wc -w)
for name in $names; do
    case " $ALL " in *" $name "*) ;; *) die "unknown image '$name' (images: $ALL)" ;; esac
    n=$((n + 1))
    log "[$n/$total] $name"
    build_one "$name"
done
log "done: $total image(s) at version $VERSION"
