#!/usr/bin/env bash
# Every setting a program takes (its --help, printed from the one table
# that defines it) is written down: in the program's README or in
# docs/configuration.md (the settings every service shares). A setting
# added without its line fails here.
# Environment (set by CTest): VMLET_BIN_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VMLET_BIN_DIR:?VMLET_BIN_DIR not set (run through ctest)}
missing=0
checked=0
for program in bus k8s-watcher image-builder vm-launcher prober status-reporter kubelet-api \
    vmletctl vmm-host; do
    readme=$program
    case $program in
    vmletctl) bin=$BIN/vmletctl ;;
    vmm-host) bin=$BIN/vmlet-vmm-host readme=vm-launcher ;; # the launcher's companion
    *) bin=$BIN/vmlet-$program ;;
    esac
    flags=$("$bin" --help 2>&1 | grep -oE '^  --[a-z0-9-]+' | sed 's/^  //') ||
        { echo "FAIL: $bin --help printed no settings"; exit 1; }
    for flag in $flags; do
        checked=$((checked + 1))
        if ! grep -qE -- "\`${flag}[=\` ]" "$ROOT/services/$readme/README.md" \
            "$ROOT/docs/configuration.md"; then
            echo "FAIL: $program's $flag is in neither services/$readme/README.md nor docs/configuration.md"
            missing=$((missing + 1))
        fi
    done
done
echo "$checked settings checked, $missing undocumented"
[ "$missing" = 0 ]
