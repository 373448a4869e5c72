# (f) an IPv6 service carries real traffic; a VIP with several ports keeps its address when one
# port is removed; the address is announced after its services exist and withdrawn before they
# are deleted — read from the netlink requests `balanced apply` sends (strace), in order.
M=/tmp/f/manifests
nat() {  # nat PORT BACKEND_ADDRS...
  p=$1; shift
  printf '  - protocol: TCP\n    port: %s\n    scheduler: rr\n    forwarding:\n      method: masquerade\n    backends:\n' "$p"
  for a in "$@"; do printf '    - address: "%s"\n      port: 80\n' "$a"; done
}

stamp "IPv6"
manifest $M/v6.yaml v6 2001:db8:100::10 "$(nat 80 2001:db8:2::11 2001:db8:2::12)"
bal apply --dataplane kernel $M > /tmp/f.apply 2>&1
check_exit "(f) apply an IPv6 service" 0 $? /tmp/f.apply
cat > /tmp/f.want6 <<EOF2
-A -t [2001:db8:100::10]:80 -s rr
-a -t [2001:db8:100::10]:80 -r [2001:db8:2::11]:80 -m -w 1
-a -t [2001:db8:100::10]:80 -r [2001:db8:2::12]:80 -m -w 1
EOF2
check_eq "(f) IPv6 service in the kernel" "$(sort /tmp/f.want6)" "$(owned_save)"
check "(f) 2001:db8:100::10/128 on balanced0" has_addr 2001:db8:100::10/128
ans=$(fetch_n 4 "http://[2001:db8:100::10]/")
if [ "$(count rs1 $ans)" -ge 1 ] && [ "$(count rs2 $ans)" -ge 1 ] && [ "$(count - $ans)" = 0 ]; then
  pass "(f) IPv6 client -> [2001:db8:100::10]:80 answered by both real servers"
else fail "(f) IPv6 client -> [2001:db8:100::10]:80 answered by both real servers" "rs1 and rs2, no failure" "$ans"; fi

stamp "multi-port VIP, announce order"
manifest $M/multi.yaml multi 198.51.100.50 "$(nat 80 192.0.2.11 192.0.2.12; nat 8080 192.0.2.13)"
traced /tmp/f.ops-add bal apply --dataplane kernel $M > /tmp/f.apply 2>&1
check_exit "(f) apply a VIP with ports 80 and 8080" 0 $? /tmp/f.apply
cat /tmp/f.ops-add
# the new VIP's requests: 2 NEW_SERVICE, 3 NEW_DEST, one NEWADDR, and the NEWADDR last
ops=$(grep -e NEW_SERVICE -e NEW_DEST -e NEWADDR /tmp/f.ops-add | awk '{print $2}' | tr '\n' ' ')
check_eq "(f) announce last: 2 services, 3 destinations, then the address" \
  "2 3 1 NEWADDR" "$(count NEW_SERVICE $ops) $(count NEW_DEST $ops) $(count NEWADDR $ops) $(echo $ops | awk '{print $NF}')"
ans="$(fetch http://198.51.100.50/) $(fetch http://198.51.100.50:8080/)"
check_eq "(f) both ports answer" "1 rs3" "$(echo $ans | awk '{print ($1 == "rs1" || $1 == "rs2"), $2}')"

manifest $M/multi.yaml multi 198.51.100.50 "$(nat 80 192.0.2.11 192.0.2.12)"
traced /tmp/f.ops-port bal apply --dataplane kernel $M > /tmp/f.apply 2>&1
check_exit "(f) apply with port 8080 removed" 0 $? /tmp/f.apply
sleep 1.5   # withdrawDelay is 1s: a deferred deletion is due now
bal apply --dataplane kernel $M > /tmp/f.apply 2>&1
if wait_until 10 sh -c "! ipvsadm -Sn | grep -q 198.51.100.50:8080"; then pass "(f) port 8080 removed"
else fail "(f) port 8080 removed" "no 198.51.100.50:8080" "$(ipvsadm -Sn)"; fi
check_eq "(f) removing one port sends no address change" "" "$(grep -e NEWADDR -e DELADDR /tmp/f.ops-port)"
check "(f) the VIP keeps its address while port 80 remains" has_addr 198.51.100.50/32
check_eq "(f) port 80 still answers" 1 "$(fetch http://198.51.100.50/ | grep -c '^rs[12]$')"

stamp "withdraw order"
rm $M/multi.yaml
traced /tmp/f.ops-del1 bal apply --dataplane kernel $M > /tmp/f.apply 2>&1
check_exit "(f) apply with the VIP's manifest removed" 0 $? /tmp/f.apply
sleep 1.5
traced /tmp/f.ops-del2 bal apply --dataplane kernel $M > /tmp/f.apply2 2>&1
cat /tmp/f.ops-del1 /tmp/f.ops-del2 | grep -v -e SYSCTL -e SET_CONFIG > /tmp/f.ops-del
cat /tmp/f.ops-del
first=$(awk '$2 == "DELADDR" || $2 == "DEL_SERVICE" || $2 == "DEL_DEST" || $2 == "SET_DEST" {print $2; exit}' /tmp/f.ops-del)
check_eq "(f) withdraw first: the address goes before any service or destination change" DELADDR "$first"
if wait_until 10 sh -c "! ipvsadm -Sn | grep -q 198.51.100.50"; then pass "(f) the VIP's services are deleted after the withdrawal"
else fail "(f) the VIP's services are deleted after the withdrawal" "no 198.51.100.50 service" "$(ipvsadm -Sn; cat /tmp/f.apply2)"; fi
check "(f) the address is gone" not has_addr 198.51.100.50/32
check "(f) the IPv6 VIP is untouched" has_addr 2001:db8:100::10/128
