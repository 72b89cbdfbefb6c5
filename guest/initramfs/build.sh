#!/bin/bash
# Builds a pod VM's initramfs: a newc cpio whose /init is the guest agent,
# with the kernel modules the VM's devices need and the order to load them.
#
#   guest/initramfs/build.sh KERNEL_DIR AGENT_BINARY OUT_FILE
#
# KERNEL_DIR is what guest/kernel/fetch.sh prints (release, modules/).
# OUT_FILE's name picks the compression: .gz (gzip), .lz4 (lz4 legacy, as
# the kernel reads it), anything else uncompressed. Modules come with their
# dependencies from modules.dep, loaded dependencies first (the agent reads
# /lib/modules/load-order, lines "CONDITION PATH"; loading virtio before
# virtio_ring fails).
set -euo pipefail

die() {
    echo "initramfs: $*" >&2
    exit 1
}

[ $# -eq 3 ] || die "usage: $0 KERNEL_DIR AGENT_BINARY OUT_FILE"
kdir=$1 agent=$2 out=$3
[ -f "$kdir/release" ] || die "$kdir/release missing (run guest/kernel/fetch.sh)"
release=$(cat "$kdir/release")
moddir=$kdir/modules/$release
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep missing"
[ -x "$agent" ] || die "agent binary $agent missing"

# The devices of a pod VM (virtio-mmio block, console, net; vsock for
# Firecracker), overlayfs for container roots, and the ACPI power button
# (with evdev, to read it) for a graceful power-off.
wanted=(virtio_ring virtio virtio_mmio virtio_blk virtio_console failover net_failover virtio_net
    overlay vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport button evdev)
# A device driver is loaded only when the VM has such a device (the agent
# reads /sys/bus/virtio/devices/*/device): virtio IDs 1 net, 2 block,
# 3 console, 19 vsock. Its dependencies inherit the condition.
declare -A when=([virtio_net]=virtio:1 [virtio_blk]=virtio:2 [virtio_console]=virtio:3
    [vmw_vsock_virtio_transport]=virtio:19 [vmw_vsock_virtio_transport_common]=virtio:19
    [vsock]=virtio:19 [failover]=virtio:1 [net_failover]=virtio:1)

declare -A path deps seen tags
while IFS= read -r line; do
    mod=${line%%:*}
    name=$(basename "$mod" .ko)
    name=${name//-/_}
    path[$name]=$mod
    deps[$name]=${line#*:}
done <"$moddir/modules.dep"

order=()
visit() {
    local n=$1 d dn
    [ -n "${seen[$n]:-}" ] && return 0
    seen[$n]=1
    for d in ${deps[$n]}; do
        dn=$(basename "$d" .ko)
        visit "${dn//-/_}"
    done
    order+=("$n")
}
for m in "${wanted[@]}"; do
    [ -n "${path[$m]:-}" ] || die "module $m is not in $moddir/modules.dep"
    visit "$m"
done
# Each module's condition: "always" if anything unconditional needs it,
# else the devices of the drivers that do (modules.dep lists every
# dependency, not only direct ones).
for m in "${wanted[@]}"; do
    t=${when[$m]:-always}
    for d in "${path[$m]}" ${deps[$m]}; do
        n=$(basename "$d" .ko)
        n=${n//-/_}
        case ",${tags[$n]:-}," in
        *,always,* | *",$t,"*) ;;
        ,,) tags[$n]=$t ;;
        *) [ "$t" = always ] && tags[$n]=always || tags[$n]="${tags[$n]},$t" ;;
        esac
    done
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/vmlet-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{dev,proc,sys,run,tmp,lib/modules}
: >"$stage/lib/modules/load-order"
for m in "${order[@]}"; do
    rel=${path[$m]}
    mkdir -p "$stage/lib/modules/$(dirname "$rel")"
    cp "$moddir/$rel" "$stage/lib/modules/$rel"
    echo "${tags[$m]} $rel" >>"$stage/lib/modules/load-order"
done
strip -o "$stage/init" "$agent" 2>/dev/null || cp "$agent" "$stage/init"
chmod 0755 "$stage/init"
# The kernel opens /dev/console for init before devtmpfs exists; without
# the node it warns (the agent opens the console itself either way).
mknod "$stage/dev/console" c 5 1 2>/dev/null || true
touch -h -d @0 $(find "$stage" -mindepth 1)

tmp="$out.tmp.$$"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet --reproducible -o -H newc -R 0:0) >"$tmp.cpio"
case $out in
*.gz) gzip -n -9 <"$tmp.cpio" >"$tmp" && rm -f "$tmp.cpio" ;;
*.lz4) lz4 -q -l -9 "$tmp.cpio" "$tmp" && rm -f "$tmp.cpio" ;;
*) mv "$tmp.cpio" "$tmp" ;;
esac
mv "$tmp" "$out"
echo "initramfs: $out ($(stat -c %s "$out") bytes; modules: ${order[*]})" >&2
