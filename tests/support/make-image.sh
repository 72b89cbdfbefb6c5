#!/usr/bin/env bash
# make-image.sh LAYOUT KIND: builds an OCI image layout (tag KIND) with
# umoci, for the image tests and benchmarks. Runs as root (it owns files
# to several users and makes a device node). Kinds:
#
#   rich      two layers: files of several owners, a setuid binary, a device
#             node, a fifo, hard and symbolic links, an xattr; the second
#             deletes a file (whiteout) and empties a directory (opaque)
#   big       five layers of about 10 MB each (mixed data), for pull tests
#   bench     five layers of about 20 MB each (mixed data), for benchmarks
#   dotdot    a layer with an entry ../../etc/passwd
#   escape    a layer with a symlink out of the root and a file through it
#   small     one small layer
#   busybox   Debian's busybox-static with its applets, a user "web" (uid
#             1000) and /www/index.html; cmd sh (the demo and VM tests)
#   sidecar   busybox plus /sidecar-only, a file only this image has
set -euo pipefail
layout=$1 kind=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -d "$layout" ] || umoci init --layout "$layout" >/dev/null
umoci new --image "$layout:$kind" >/dev/null
umoci unpack --image "$layout:$kind" "$work/bundle" >/dev/null
root=$work/bundle/rootfs

repack() { umoci repack --refresh-bundle --image "$layout:$kind" "$work/bundle" >/dev/null; }
# add_raw TAR: appends an uncompressed tar as a layer, verbatim.
add_raw() { umoci raw add-layer --image "$layout:$kind" "$1" >/dev/null; }

base_files() {
    mkdir -p "$root"/{bin,etc,data,home/alice,srv,dev,run}
    printf 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' >"$root/etc/passwd"
    cp /bin/true "$root/bin/true"
    echo "keep me" >"$root/etc/keep"
    echo "delete me" >"$root/etc/removed"
    echo "old 1" >"$root/data/old1"
    echo "old 2" >"$root/data/old2"
}

case $kind in
rich)
    base_files
    echo "alice's" >"$root/home/alice/notes"
    chown -R 1000:1000 "$root/home/alice"
    echo "nobody's" >"$root/srv/spool"
    chown 65534:65534 "$root/srv/spool"
    chmod 0640 "$root/srv/spool"
    cp /bin/true "$root/bin/su-ish"
    chmod 4755 "$root/bin/su-ish"
    mknod "$root/dev/null-ish" c 1 3
    mkfifo "$root/run/pipe"
    ln "$root/etc/keep" "$root/etc/keep-hardlink"
    ln -s ../etc/keep "$root/data/keep-link"
    ln -s "/$(head -c 100 /dev/zero | tr '\0' 'x')" "$root/data/long-link"
    chmod 1777 "$root/run"
    if command -v setfattr >/dev/null; then setfattr -n user.vmlet -v hello "$root/etc/keep"; fi
    repack
    # Layer 2, by hand: a whiteout, an opaque directory with a new file.
    mkdir -p "$work/l2/etc" "$work/l2/data"
    : >"$work/l2/etc/.wh.removed"
    : >"$work/l2/data/.wh..wh..opq"
    echo "new" >"$work/l2/data/new"
    (cd "$work/l2" && tar --numeric-owner --owner=0 --group=0 -cf "$work/l2.tar" etc data)
    add_raw "$work/l2.tar"
    ;;
big | bench)
    base_files
    repack
    size=10M files=200
    [ "$kind" = bench ] && size=12M files=600
    for i in 1 2 3 4 5; do
        mkdir -p "$root/layer$i"
        head -c "$size" /dev/urandom >"$root/layer$i/random.bin"
        for j in $(seq 1 "$files"); do seq "$j" $((j + 3000)) >"$root/layer$i/text-$j.txt"; done
        repack
    done
    ;;
dotdot)
    base_files
    repack
    echo "pwned" >"$work/payload"
    (cd "$work" && tar -P --transform='s,^payload$,../../etc/passwd,' -cf "$work/evil.tar" payload)
    add_raw "$work/evil.tar"
    ;;
escape)
    base_files
    repack
    ln -s ../../../../../../tmp "$work/evil"
    echo "pwned" >"$work/payload"
    (cd "$work" && tar -P --transform='s,^payload$,evil/vmlet-escaped,' -cf "$work/evil.tar" evil payload)
    add_raw "$work/evil.tar"
    ;;
small)
    base_files
    repack
    ;;
busybox | sidecar)
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,www,root,home/web,proc,sys,dev}
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list-full); do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\nweb:x:1000:\n' >"$root/etc/group"
    chown 1000:1000 "$root/home/web"
    chmod 1777 "$root/tmp"
    echo "hello from a vmlet pod" >"$root/www/index.html"
    if [ "$kind" = sidecar ]; then echo "only in the sidecar image" >"$root/sidecar-only"; fi
    umoci config --image "$layout:$kind" --config.cmd=/bin/sh \
        --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --config.workingdir=/ >/dev/null
    umoci unpack --image "$layout:$kind" "$work/bundle2" >/dev/null
    rm -rf "$work/bundle2/rootfs"
    mv "$root" "$work/bundle2/rootfs"
    rm -rf "$work/bundle"
    mv "$work/bundle2" "$work/bundle"
    repack
    ;;
*)
    echo "make-image.sh: unknown kind '$kind'" >&2
    exit 2
    ;;
esac
umoci gc --layout "$layout" >/dev/null
