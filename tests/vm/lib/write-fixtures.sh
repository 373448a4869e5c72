#!/usr/bin/env bash
# write-fixtures.sh OUT_DIR FIXTURE_DIR — turns the guest's captures (NAME.strace + NAME.meta, see
# tests/vm/guest/capture.sh) into engine/tests/fixtures/ipvsadm/NAME.txt: comment lines naming
# the exact command, its exit status and output, the kernel and ipvsadm versions, then one
# netlink message per line (`> HEX` sent by ipvsadm, `< HEX` the kernel's reply).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
out=$1 dest=$2
mkdir -p "$dest"
n=0
for meta in "$out"/*.meta; do
  [ -e "$meta" ] || { echo "write-fixtures: no captures in $out" >&2; exit 1; }
  name=$(basename "$meta" .meta)
  {
    sed -n 's/^command: /# /p' "$meta"
    echo "# exit status $(sed -n 's/^exit: //p' "$meta"); kernel $(sed -n 's/^kernel: //p' "$meta"); $(sed -n 's/^ipvsadm: //p' "$meta")"
    sed -n 's/^output: \(..*\)/# | \1/p' "$meta"
    echo "# captured by tests/vm/run --capture; '>' sent by ipvsadm, '<' received from the kernel"
    awk -f "$HERE/strace2hex.awk" "$out/$name.strace"
  } > "$dest/$name.txt"
  n=$((n + 1))
done
echo "write-fixtures: $n fixture files in $dest" >&2
