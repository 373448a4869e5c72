# (d) same table from a different history: an `mh` service built from empty; which backend each
# of 150 client addresses lands on is recorded. Then the node is flushed and the manifests reach
# the same content through a different sequence of edits (other backends first, other weights,
# a backend removed and re-added, the backends finally listed in another order), each applied
# to the kernel; the node is flushed again — as a rebuilt or a new director is — and the final
# manifests are applied: every client must land on the same backend again, and the kernel's
# destination list (what mh builds its table from) must be in the same order.
#
# The engine guarantees the canonical order for a service built from empty. A destination added
# to a service that exists goes to the head of the kernel's list (the kernel decides that), so
# after incremental edits the order is history's until the service is rebuilt: the scenario
# prints that order as a NOTE, it does not assert it.
M=/tmp/d/manifests
VIP=198.51.100.30
BACKENDS="192.0.2.11 192.0.2.12 192.0.2.13 192.0.2.21 192.0.2.22 192.0.2.23"
rs_serve_address rs1 192.0.2.21
rs_serve_address rs2 192.0.2.22
rs_serve_address rs3 192.0.2.23
mh_manifest() {  # mh_manifest "ADDR:WEIGHT ..."
  {
    printf '  - protocol: TCP\n    port: 80\n    scheduler: mh\n    forwarding:\n      method: masquerade\n    backends:\n'
    for aw in $1; do printf '    - address: %s\n      port: 81\n      weight: %s\n' "${aw%:*}" "${aw#*:}"; done
  } > /tmp/d.svc
  manifest $M/mh.yaml mh $VIP "$(cat /tmp/d.svc)"
}
apply_step() {
  mh_manifest "$1"
  bal apply --dataplane kernel $M > /tmp/d.apply 2>&1 || { echo "apply failed:"; cat /tmp/d.apply; }
}
# client addresses 203.0.113.10-159 on the client's eth0 (.100 is its own already)
i=10
while [ $i -lt 160 ]; do [ $i = 100 ] || ip -n client addr add 203.0.113.$i/24 dev eth0; i=$((i + 1)); done
# map FILE: one line "CLIENT BACKEND" per client address: the source address is chosen by a
# host route to the VIP with `src`, re-pointed before each request (busybox ip inside the ns).
map() {
  nsenter --net=/run/netns/client sh -c '
    i=10
    while [ $i -lt 160 ]; do
      busybox ip route replace '$VIP'/32 via 203.0.113.1 src 203.0.113.$i
      echo "203.0.113.$i $(timeout 5 wget -q -O - http://'$VIP'/ 2>/dev/null || echo -)"
      i=$((i + 1))
    done
    busybox ip route del '$VIP'/32' > "$1"
}

FINAL="192.0.2.11:1 192.0.2.12:1 192.0.2.13:2 192.0.2.21:1 192.0.2.22:1 192.0.2.23:1"
stamp "history 1: from empty"
apply_step "$FINAL"
ipvs_order > /tmp/d.order1
map /tmp/d.map1
used=$(awk '{print $2}' /tmp/d.map1 | sort -u | grep -v '^-$' | wc -l)
failed=$(awk '$2 == "-"' /tmp/d.map1 | wc -l)
if [ "$failed" = 0 ] && [ "$used" -ge 4 ]; then pass "(d) 150 clients answered, spread over $used backends"
else fail "(d) 150 clients answered, spread over the backends" "0 failures, >= 4 backends" "$failed failures, $used backends"; fi

stamp "history 2: flush, then other edits"
ipvsadm -C
ip link del balanced0
apply_step "192.0.2.23:1 192.0.2.13:5"
apply_step "192.0.2.23:1 192.0.2.13:5 192.0.2.22:3 192.0.2.11:1"
apply_step "192.0.2.23:1 192.0.2.22:3 192.0.2.11:1"
apply_step "192.0.2.11:2 192.0.2.12:1 192.0.2.22:1 192.0.2.23:4"
# The same manifests as FINAL, with the backends listed in another order.
REORDERED="192.0.2.23:1 192.0.2.13:2 192.0.2.22:1 192.0.2.11:1 192.0.2.21:1 192.0.2.12:1"
apply_step "$REORDERED"
echo "NOTE: (d) kernel order after incremental edits (history's, until rebuilt): $(ipvs_order | tr '\n' ' ')"
stamp "history 2: the rebuilt director"
ipvsadm -C
ip link del balanced0
apply_step "$REORDERED"
ipvs_order > /tmp/d.order2
[ -s /tmp/d.order1 ] || echo "(no destinations after history 1)" > /tmp/d.order1
check_eq "(d) the kernel's destination order is the same after either history" "$(cat /tmp/d.order1)" "$(cat /tmp/d.order2)"
map /tmp/d.map2
moved=$(diff /tmp/d.map1 /tmp/d.map2 | grep '^[-+]2' | wc -l)
if [ "$failed" != 0 ] || grep -q ' -$' /tmp/d.map2; then
  fail "(d) all 150 clients land on the same backend after a different history" "every client answered in both rounds" "$(grep -c ' -$' /tmp/d.map2) failures in round 2, $failed in round 1"
elif [ "$moved" = 0 ]; then pass "(d) all 150 clients land on the same backend after a different history"
else fail "(d) all 150 clients land on the same backend after a different history" "no client moved" "$(diff /tmp/d.map1 /tmp/d.map2 | grep '^[-+]2' | head -20)"; fi
ip link del balanced0 2>/dev/null
