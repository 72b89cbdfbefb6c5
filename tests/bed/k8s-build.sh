#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# from Debian's `kubernetes` source package into $K8S_BIN (outside the work
# tree, keyed by version), so a second run finds them and skips the build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

binaries="kube-apiserver kube-controller-manager kube-scheduler kubectl"

have_all() {
    local b
    for b in $binaries; do [ -x "$K8S_BIN/$b" ] || return 1; done
    "$K8S_BIN/kubectl" version --client --short 2>/dev/null | grep -q "v$K8S_VERSION"
}

if have_all; then
    bed_log "kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
    exit 0
fi

# deb-src: reuse the machine's own apt sources (never a host name of ours).
enable_deb_src() {
    if apt-get source --dry-run kubernetes >/dev/null 2>&1; then return 0; fi
    bed_log "enabling deb-src entries copied from this machine's apt sources"
    local f out=/etc/apt/sources.list.d/vmlet-deb-src.sources
    : >"$out.tmp"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ "$f" = "$out" ] && continue
        [ -f "$f" ] || continue
        # Keep only stanzas that are plain Debian `deb` entries.
        awk 'BEGIN{RS=""; ORS="\n\n"} /(^|\n)Types:[ \t]*deb([ \t]|\n|$)/ {sub(/Types:[ \t]*deb/, "Types: deb-src"); print}' "$f" >>"$out.tmp"
    done
    if [ -f /etc/apt/sources.list ]; then
        grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
            >/etc/apt/sources.list.d/vmlet-deb-src.list || true
    fi
    mv "$out.tmp" "$out"
    apt-get update -q >/dev/null
}

work=${K8S_BUILD_DIR:-$VMLET_CACHE/kubernetes-$K8S_VERSION/src}
mkdir -p "$work" "$K8S_BIN"

# Debian's package may carry a version like 1.20.5+really1.20.2.
src=$(find "$work" -maxdepth 1 -type d -name "kubernetes-*$K8S_VERSION" | head -n 1)
if [ -z "$src" ]; then
    enable_deb_src
    bed_log "fetching Debian's kubernetes source package into $work"
    (cd "$work" && apt-get source -q kubernetes >/dev/null) ||
        bed_die "apt-get source kubernetes failed; check that this machine's apt sources reach Debian (apt-get update)"
    src=$(find "$work" -maxdepth 1 -type d -name "kubernetes-*$K8S_VERSION" | head -n 1)
    [ -n "$src" ] || bed_die "Debian's kubernetes source package in $work is not version $K8S_VERSION"
fi

# The vendored reflect2 1.0.1 crashes under Go >= 1.18 (SIGSEGV in map
# iteration after a few minutes); Debian's 1.0.2 fixes it (DESIGN.md §4).
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$reflect2_src" ] || bed_die "missing $reflect2_src: apt-get install golang-github-modern-go-reflect2-dev"
if ! grep -q 'modern-go/reflect2 v1.0.2' "$src/vendor/modules.txt" 2>/dev/null; then
    bed_log "replacing vendored reflect2 1.0.1 with Debian's 1.0.2"
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -r "$reflect2_src" "$src/vendor/github.com/modern-go/reflect2"
    rm -rf "$src/vendor/github.com/modern-go/reflect2/debian" "$src/vendor/github.com/modern-go/reflect2/"*_test.go
    # go.mod pins it with a replace directive; vendor/modules.txt must agree.
    sed -i 's#\(github.com/modern-go/reflect2\) v1.0.1#\1 v1.0.2#g' \
        "$src/vendor/modules.txt" "$src/go.mod" "$src/staging/src/k8s.io/apimachinery/go.mod"
fi

bed_log "building kubernetes $K8S_VERSION ($binaries); about 10 minutes on 2 cores, log in $work/build.log"
start=$SECONDS
(
    cd "$src"
    export GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE=$VMLET_CACHE/go-build GOPATH=$VMLET_CACHE/gopath
    export KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
    for b in $binaries; do
        bed_log "  building $b ($((SECONDS - start))s so far)"
        make WHAT="cmd/$b" >>"$work/build.log" 2>&1 ||
            bed_die "building $b failed; see the end of $work/build.log"
        cp "_output/local/bin/linux/amd64/$b" "$K8S_BIN/$b.tmp"
        mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
    done
)
have_all || bed_die "built binaries in $K8S_BIN do not report v$K8S_VERSION"
bed_log "kubernetes $K8S_VERSION built in $((SECONDS - start))s into $K8S_BIN"
