# (c) real traffic: the client namespace reaches the VIPs and gets answers from the real servers
# in their namespaces, in NAT (with a port change), DR and IPIP-tunnel modes.
M=/tmp/c/manifests
two_backends() {  # two_backends FORWARDING PORT
  cat <<YAML
  - protocol: TCP
    port: $2
    scheduler: rr
    forwarding:
      method: $1
    backends:
    - address: 192.0.2.11
      port: 80
    - address: 192.0.2.12
      port: 80
YAML
}
manifest $M/nat.yaml traffic-nat 198.51.100.21 "$(two_backends masquerade 80; two_backends masquerade 8080)"
manifest $M/dr.yaml traffic-dr 198.51.100.22 "$(two_backends direct 80)"
manifest $M/tun.yaml traffic-tun 198.51.100.23 "$(two_backends tunnel 80)"
bal apply --dataplane kernel $M > /tmp/c.apply 2>&1
check_exit "(c) apply NAT, DR and tunnel services" 0 $? /tmp/c.apply
ipvsadm -Ln

# traffic_check LABEL URL: 6 GETs answered, both real servers used
traffic_check() {
  ans=$(fetch_n 6 "$2")
  n1=$(count rs1 $ans) n2=$(count rs2 $ans)
  if [ "$n1" -ge 1 ] && [ "$n2" -ge 1 ] && [ $((n1 + n2)) = 6 ]; then pass "$1"
  else fail "$1" "6 answers from rs1 and rs2, both used" "$ans"; fi
}
t0=$(tunl_rx)
traffic_check "(c) NAT: client -> 198.51.100.21:80 answered by both real servers" http://198.51.100.21/
traffic_check "(c) NAT with a port change: :8080 -> real servers' :80" http://198.51.100.21:8080/
check_eq "(c) NAT: nothing arrived IPIP-encapsulated" 0 $(( $(tunl_rx) - t0 ))
t0=$(tunl_rx)
traffic_check "(c) DR: client -> 198.51.100.22:80 answered by both real servers" http://198.51.100.22/
check_eq "(c) DR: nothing arrived IPIP-encapsulated" 0 $(( $(tunl_rx) - t0 ))
t0=$(tunl_rx)
traffic_check "(c) tunnel: client -> 198.51.100.23:80 answered by both real servers" http://198.51.100.23/
tun=$(( $(tunl_rx) - t0 ))
if [ $tun -ge 6 ]; then pass "(c) tunnel: requests arrived IPIP-encapsulated on tunl0 ($tun packets)"
else fail "(c) tunnel: requests arrived IPIP-encapsulated on tunl0" ">= 6 packets decapsulated" "$tun"; fi
ipvsadm -Lnc | head -20
