# (v) vipLinks: 4 spreads the examples' VIP addresses over balanced0 and balanced0-1..3, each on
# the link FNV-1a of its address picks (the golden file was computed apart from balanced);
# the model still sees one link, so a second apply changes nothing. After vipLinks shrinks to 2
# the addresses on balanced0-2 and -3 stay and count as present, and a VIP that leaves is
# deleted from the link it is on.
EX=/vm/examples
mkdir -p /tmp/v/m
cp $EX/manifests/*.yaml /tmp/v/m/
node_with_links() {
  awk -v n="$1" '{print} /^spec:/ {print "  vipLinks: " n}' $EX/node.yaml > /tmp/v/node.yaml
}
node_with_links 4
BAL_CONFIG=/tmp/v/node.yaml
spread() {
  for l in balanced0 balanced0-1 balanced0-2 balanced0-3; do
    link_addrs $l | sed "s|^|$l |"
  done
}

bal apply --dataplane kernel /tmp/v/m > /tmp/v.apply1 2>&1
check_exit "(v) apply with vipLinks: 4 exits 0" 0 $? /tmp/v.apply1
spread > /tmp/v.spread
check_golden "(v) each VIP is on the link its hash picks" examples.vip-links-4 /tmp/v.spread
check_eq "(v) all four links are up" "UP UP UP UP" "$(for l in balanced0 balanced0-1 balanced0-2 balanced0-3; do
  ip -o link show dev $l | grep -o 'state [A-Z]*' | cut -d' ' -f2 | sed 's/UNKNOWN/UP/'; done | tr '\n' ' ' | sed 's/ $//')"
traced /tmp/v.ops2 bal apply --dataplane kernel /tmp/v/m > /tmp/v.apply2 2>&1
check_exit "(v) second apply exits 0" 0 $? /tmp/v.apply2
check_eq "(v) second apply sends no changing request" "" "$(cat /tmp/v.ops2)"

# Shrink to two links: nothing moves, nothing is planned.
node_with_links 2
bal plan --dataplane kernel /tmp/v/m > /tmp/v.plan 2>&1
check_exit "(v) after vipLinks: 2, plan: no changes (exit 0)" 0 $? /tmp/v.plan
# 203.0.113.80 (legacy-nat.yaml) is on balanced0-3: withdrawn from there.
rm /tmp/v/m/legacy-nat.yaml
bal apply --dataplane kernel --allow-mass-delete /tmp/v/m > /tmp/v.apply3 2>&1
check_exit "(v) apply without legacy-nat.yaml exits 0" 0 $? /tmp/v.apply3
check_eq "(v) 203.0.113.80 left balanced0-3, the rest stayed" \
  "$(grep -v 203.0.113.80 /vm/expected/examples.vip-links-4)" "$(spread)"
