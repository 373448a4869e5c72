# (a) `balanced apply examples/manifests` → `ipvsadm -Sn` and the VIP link show exactly the
# expected state (golden files, reviewed); a second apply makes zero changes — proven from the
# netlink requests it sends (strace), not from what it reports.
EX=/vm/examples
BAL_CONFIG=$EX/node.yaml
if [ ! -d $EX/manifests ] || [ ! -f $BAL_CONFIG ]; then
  fail "(a) examples/manifests and examples/node.yaml exist" "both in the repository" "$(ls $EX 2>&1)"
  return 0 2>/dev/null || exit 0
fi
IFACE=$(awk '$1 == "interface:" {print $2}' $BAL_CONFIG | tr -d '"')
IFACE=${IFACE:-balanced0}

bal apply --dataplane kernel $EX/manifests > /tmp/a.apply1 2>&1
check_exit "(a) first apply of examples/manifests exits 0" 0 $? /tmp/a.apply1
ipvs_save > /tmp/a.save
link_addrs $IFACE > /tmp/a.addrs
check_golden "(a) ipvsadm -Sn shows exactly the examples" examples.ipvsadm-Sn /tmp/a.save
check_golden "(a) $IFACE holds exactly the examples' VIPs" examples.addresses /tmp/a.addrs
check_eq "(a) $IFACE is up" "UP" "$(ip -o link show dev $IFACE | grep -o 'state [A-Z]*' | cut -d' ' -f2 | sed 's/UNKNOWN/UP/')"

traced /tmp/a.ops2 bal apply --dataplane kernel $EX/manifests > /tmp/a.apply2 2>&1
check_exit "(a) second apply exits 0" 0 $? /tmp/a.apply2
check_eq "(a) second apply sends no changing request to the kernel" "" "$(cat /tmp/a.ops2)"
ipvs_save > /tmp/a.save2
check_eq "(a) second apply leaves ipvsadm -Sn as it was" "$(cat /tmp/a.save)" "$(cat /tmp/a.save2)"
bal plan --dataplane kernel $EX/manifests > /tmp/a.plan 2>&1
check_exit "(a) plan after apply: no changes (exit 0)" 0 $? /tmp/a.plan
