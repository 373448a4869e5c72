# (m) operations on the real kernel: `balanced run` serves /metrics on an ephemeral loopback
# port; the kernel's service and destination counters rise after client traffic (STATS64
# connection and packet totals are exact at dump time; the daemon re-observes every resync, 2 s
# here); /readyz answers 200; `balanced maintenance on` withdraws the VIP address from
# balanced0 while `ipvsadm -Sn` stays identical, `off` announces it again.
M=/tmp/m/manifests
manifest $M/web.yaml metrics-web 198.51.100.31 "  - protocol: TCP
    port: 80
    scheduler: rr
    forwarding:
      method: masquerade
    backends:
    - address: 192.0.2.11
      port: 80
    - address: 192.0.2.12
      port: 80"
bal_run_start --dataplane kernel --metrics-addr 127.0.0.1:0 --metrics-destinations $M
if wait_until 30 test -s "$BAL_STATE/metrics-address"; then
  pass "(m) balanced run writes its metrics address"
else fail "(m) balanced run writes its metrics address" "$BAL_STATE/metrics-address" "$(tail -20 $BAL_STATE.run.log)"; fi
ADDR=$(cat "$BAL_STATE/metrics-address")
get() { wget -q -O - "http://$ADDR$1" 2>/dev/null; }
SVC='{name="metrics-web",vip="198.51.100.31",protocol="tcp",port="80"}'
# value SERIES: the sample of SERIES (name and labels, exactly) in a fresh scrape; empty if none.
value() { get /metrics | awk -v s="$1" 'index($0, s " ") == 1 {print $2; exit}'; }
at_least() { v=$(value "$1"); [ -n "$v" ] && [ "$v" -ge "$2" ]; }
ready() { get /readyz | grep -q '^ok'; }

if wait_until 30 at_least "balanced_service_connections_total$SVC" 0; then
  pass "(m) /metrics shows the service's kernel counters"
else fail "(m) /metrics shows the service's kernel counters" "balanced_service_connections_total$SVC" "$(get /metrics | grep service_ | head -5; tail -10 $BAL_STATE.run.log)"; fi
check "(m) /readyz answers ok once converged" wait_until 15 ready
# From a scrape on stdin: the service's connections, and its destinations' summed.
service_connections() { awk -v s="balanced_service_connections_total$SVC" 'index($0, s " ") == 1 {print $2; exit}'; }
destination_connections() {
  awk -v p="balanced_destination_connections_total{name=\"metrics-web\",vip=\"198.51.100.31\"," \
    'index($0, p) == 1 {n += $2} END {print n + 0}'
}
scrape=$(get /metrics)
c0=$(echo "$scrape" | service_connections) d0=$(echo "$scrape" | destination_connections)
p0=$(value "balanced_service_packets_in_total$SVC")
b0=$(value "balanced_service_bytes_out_total$SVC")

ans=$(fetch_n 6 http://198.51.100.31/)
n=$(( $(count rs1 $ans) + $(count rs2 $ans) ))
check_eq "(m) 6 requests through the VIP answered" 6 "$n"
if wait_until 20 at_least "balanced_service_connections_total$SVC" $((c0 + 6)); then
  pass "(m) service connections counter rose by the 6 connections (from $c0 to $(value "balanced_service_connections_total$SVC"))"
else fail "(m) service connections counter rose by the 6 connections" ">= $((c0 + 6))" "$(value "balanced_service_connections_total$SVC"); ipvsadm -Ln --stats"; fi
# at least SYN, ACK, request and FIN per connection
if at_least "balanced_service_packets_in_total$SVC" $((p0 + 18)); then
  pass "(m) service packets-in counter rose"
else fail "(m) service packets-in counter rose" ">= $((p0 + 18))" "$(value "balanced_service_packets_in_total$SVC")"; fi
if at_least "balanced_service_bytes_out_total$SVC" $((b0 + 1)); then
  pass "(m) service bytes-out counter rose (NAT replies pass the director)"
else fail "(m) service bytes-out counter rose" "> $b0" "$(value "balanced_service_bytes_out_total$SVC")"; fi
# The destinations' counters rose with the service's, each pair from one scrape. (Not "by
# exactly 6": one CI run counted 7 connections through the VIP for 6 answered GETs, and the
# service check above allows that too.)
scrape=$(get /metrics)
c1=$(echo "$scrape" | service_connections) d1=$(echo "$scrape" | destination_connections)
check_eq "(m) destination connection counters rose with the service's" $((c1 - c0)) "$((d1 - d0))"
check "(m) destination connection counters rose by at least the 6 connections" test "$((d1 - d0))" -ge 6

stamp "maintenance"
ipvs_save > /tmp/m.before
bal maintenance on --reason "vm lane" > /tmp/m.on 2>&1
check_exit "(m) balanced maintenance on" 0 $? /tmp/m.on
if wait_until 10 not has_addr 198.51.100.31/32; then
  pass "(m) maintenance on: the running daemon withdrew 198.51.100.31 from balanced0"
else fail "(m) maintenance on withdraws the VIP address" "not on balanced0" "$(link_addrs)"; fi
check_eq "(m) maintenance keeps every IPVS service and destination" "$(cat /tmp/m.before)" "$(ipvs_save)"
check_eq "(m) /metrics shows maintenance" 1 "$(value 'balanced_maintenance{switch="operator"}')"
bal maintenance off > /tmp/m.off 2>&1
check_exit "(m) balanced maintenance off" 0 $? /tmp/m.off
if wait_until 10 has_addr 198.51.100.31/32; then
  pass "(m) maintenance off: 198.51.100.31 announced again"
else fail "(m) maintenance off announces the VIP address again" "198.51.100.31/32 on balanced0" "$(link_addrs)"; fi
check_eq "(m) IPVS unchanged after maintenance off" "$(cat /tmp/m.before)" "$(ipvs_save)"
ans=$(fetch_n 2 http://198.51.100.31/)
check_eq "(m) traffic flows again after maintenance off" 2 $(( $(count rs1 $ans) + $(count rs2 $ans) ))
check "(m) balanced run is still running" kill -0 $BAL_RUN_PID
bal_run_stop
