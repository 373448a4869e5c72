# (p) the backend role (issue 7): pods of a Kubernetes node get the VIP inside their own
# network namespace, so tunnel forwarding delivers to them and they answer the client directly.
#
#   director (root ns) ──lan0── knode ns 192.0.2.30 (a Kubernetes node: forwards, bridge cni0
#                                │   10.244.1.1/24, MTU 1450, veths to the pods)
#                                └── eth1 10.0.0.2/30 ── router eth2 10.0.0.1 (replies' way out)
#   pods: namespaces /run/netns/<pod UID> (--netns-dir, as a CNI naming them would), eth0 on cni0
#
# Then GUE (a FOU port feeding tunl0), GRE (gre0) and an IPv6 VIP over IPv4 (sit0), each answered;
# then IPv6 VIPs to the pod's IPv6 address: IPv6-in-IPv6 (ip6tnl0), GRE over IPv6 (ip6gre0) and
# GUE over IPv6 (a FOU -6 port feeding ip6tnl0), answered directly too; and the backend role's
# own /status, /metrics, /readyz and `balanced status --role backend`.
# pod-c is another node's backend (weight 0, so the director never picks it): left alone.
# The pods start with nothing but eth0 and a default route; `balanced --role backend` does the
# rest. Replies leave the knode towards the router directly: the director's bridge port to the
# knode (kn-lan) sees the requests go out and nothing come back.
M=/tmp/p/manifests
BK_STATE=/tmp/p/backend-state
UA=0a1b2c3d-0000-4000-8000-00000000000a   # pod-a
UB=0a1b2c3d-0000-4000-8000-00000000000b   # pod-b
UC=0a1b2c3d-0000-4000-8000-00000000000c   # pod-c, on another node
VIP=198.51.100.50
bk() {  # bk COMMAND ARGS...: the backend role of node "knode"
  c=$1; shift
  balanced "$c" --role backend --node-name knode --netns-dir /run/netns --state-dir $BK_STATE "$@"
}

ip netns add knode
ip -n knode link set lo up
ip link add kn-lan type veth peer name eth0 netns knode
ip link set kn-lan master lan0 up
ip -n knode addr add 192.0.2.30/24 dev eth0
ip -n knode link set eth0 up
ip link add rt-kn type veth peer name eth1 netns knode
ip link set rt-kn netns router
ip -n router link set rt-kn name eth2
ip -n router addr add 10.0.0.1/30 dev eth2
ip -n router link set eth2 up
nsx router sysctl -qw net.ipv4.conf.all.rp_filter=0
nsx router sysctl -qw net.ipv4.conf.eth2.rp_filter=0
ip -n knode addr add 10.0.0.2/30 dev eth1
ip -n knode link set eth1 up
ip -n knode route add default via 10.0.0.1
ip -n knode link add cni0 type bridge
ip -n knode link set cni0 mtu 1450 up
ip -n knode addr add 10.244.1.1/24 dev cni0
ip -n knode -6 addr add 2001:db8:244::1/64 dev cni0 nodad
ip -n knode -6 addr add 2001:db8:10::2/64 dev eth1 nodad
ip -n knode -6 route add default via 2001:db8:10::1
ip -n router -6 addr add 2001:db8:10::1/64 dev eth2 nodad
nsx knode sysctl -qw net.ipv6.conf.all.forwarding=1
nsx knode sysctl -qw net.ipv4.ip_forward=1
nsx knode sysctl -qw net.ipv4.conf.all.rp_filter=0
ip route add 10.244.1.0/24 via 192.0.2.30

# pod_up UID N NAME: a pod namespace with eth0 10.244.1.N/24 (MTU 1450) and httpd answering NAME.
pod_up() {
  ip netns add $1
  ip -n $1 link set lo up
  ip -n knode link add veth$2 mtu 1450 type veth peer name eth0 netns $1
  ip -n knode link set veth$2 master cni0 up
  ip -n $1 link set eth0 mtu 1450 up
  ip -n $1 addr add 10.244.1.$2/24 dev eth0
  ip -n $1 route add default via 10.244.1.1
  ip -n $1 -6 addr add 2001:db8:244::$2/64 dev eth0 nodad
  ip -n $1 -6 route add default via 2001:db8:244::1
  ip -n knode neigh del 10.244.1.$2 dev cni0 2>/dev/null  # a restarted pod has a new MAC
  mkdir -p /www/$3; echo $3 > /www/$3/index.html
  nsx $1 httpd -p 80 -h /www/$3
}
pod_up $UA 11 pod-a
pod_up $UB 12 pod-b
pod_up $UC 13 pod-c

backend() {  # backend ADDR UID NODE [WEIGHT]
  cat <<YAML
    - address: $1
      weight: ${4:-1}
      node: $3
      pod: {namespace: default, name: web-$2, uid: $2}
YAML
}
service() {  # service BACKENDS_YAML
  cat <<YAML
  - protocol: TCP
    port: 80
    scheduler: rr
    forwarding:
      method: tunnel
    backends:
$1
YAML
}
manifest $M/web.yaml dsr-web $VIP "$(service "$(backend 10.244.1.11 $UA knode; backend 10.244.1.12 $UB knode; backend 10.244.1.13 $UC other-node 0)")"
bal apply $M > /tmp/p.apply 2>&1
check_exit "(p) director: apply the tunnel-forwarded service with pod backends" 0 $? /tmp/p.apply

# -- dry run, then one pass ----------------------------------------------------------------------
bk plan $M > /tmp/p.plan 2>&1
rc=$?
check_exit "(p) backend plan: changes pending (exit 2)" 2 $rc /tmp/p.plan
cat /tmp/p.plan
if grep -q "+ address $VIP/32 dev tunl0" /tmp/p.plan && grep -q "mtu 1430" /tmp/p.plan \
   && grep -q "advmss 1390" /tmp/p.plan; then pass "(p) backend plan shows the VIP, tunl0 MTU 1450-20 and advmss 1390 as a diff"
else fail "(p) backend plan shows the VIP, MTU and advmss" "+ address $VIP/32 dev tunl0, mtu 1430, advmss 1390" "$(cat /tmp/p.plan)"; fi
check_eq "(p) plan changed nothing (no VIP in pod-a yet)" "" "$(ip -n $UA -o addr show dev tunl0 | awk '{print $4}')"

bk apply $M > /tmp/p.bk-apply 2>&1
check_exit "(p) backend apply configures the node's pods" 0 $? /tmp/p.bk-apply
cat /tmp/p.bk-apply
pod_view() {  # pod_view UID: what balanced set in the pod, one line
  echo "addr=$(ip -n $1 -o addr show dev tunl0 | awk '{print $4}' | sort | tr '\n' ' ')" \
       "link=$(ip -n $1 -o link show dev tunl0 | grep -o 'UP,LOWER_UP\|mtu [0-9]*' | tr '\n' ' ')" \
       "rp=$(nsx $1 cat /proc/sys/net/ipv4/conf/all/rp_filter)$(nsx $1 cat /proc/sys/net/ipv4/conf/tunl0/rp_filter)" \
       "rule=$(ip -n $1 rule show | grep -c "from $VIP lookup 4177")" \
       "route=$(ip -n $1 route show table 4177 | tr -s ' ' | sed 's/ $//')"
}
# wait_view UID WANT SECONDS: until the pod shows WANT (a pass may be midway when polled).
wait_view() {
  n=0
  while [ "$(pod_view $1)" != "$2" ] && [ $n -lt $(( $3 * 2 )) ]; do usleep 500000; n=$((n + 1)); done
}
want="addr=$VIP/32  link=UP,LOWER_UP mtu 1430  rp=00 rule=1 route=default via 10.244.1.1 dev eth0 proto 177 advmss 1390"
check_eq "(p) pod-a: VIP on tunl0, up, MTU, rp_filter, rule and MSS route" "$want" "$(pod_view $UA)"
check_eq "(p) pod-b: the same" "$want" "$(pod_view $UB)"
check_eq "(p) pod-c (another node's backend): untouched" "" "$(ip -n $UC -o addr show dev tunl0 | awk '{print $4}')"
bk plan $M > /tmp/p.plan2 2>&1
check_exit "(p) backend plan after apply: converged (exit 0)" 0 $? /tmp/p.plan2

# -- traffic: answers come from the pods, directly ----------------------------------------------
rx() { cat /sys/class/net/$1/statistics/rx_packets; }
tx() { cat /sys/class/net/$1/statistics/tx_packets; }
# answered once first: neighbours on every hop are resolved (slow under TCG on a busy host)
warm http://$VIP/
knrx0=$(rx kn-lan) kntx0=$(tx kn-lan) out0=$(nsx knode cat /sys/class/net/eth1/statistics/tx_packets)
ans=$(fetch_n 6 http://$VIP/)
na=$(count pod-a $ans) nb=$(count pod-b $ans)
if [ "$na" -ge 1 ] && [ "$nb" -ge 1 ] && [ $((na + nb)) = 6 ]; then pass "(p) client -> $VIP:80 answered by pod-a and pod-b through the tunnel"
else fail "(p) client -> $VIP:80 answered by both pods" "6 answers from pod-a and pod-b" "$ans"; fi
knrx=$(( $(rx kn-lan) - knrx0 )) kntx=$(( $(tx kn-lan) - kntx0 ))
out=$(( $(nsx knode cat /sys/class/net/eth1/statistics/tx_packets) - out0 ))
echo "director -> knode frames: $kntx; knode -> director frames: $knrx; knode -> router packets: $out"
if [ $kntx -ge 18 ] && [ $out -ge 18 ] && [ $knrx -le 2 ]; then
  pass "(p) replies bypass the director: $kntx frames to the knode, $knrx back, $out out to the router"
else
  fail "(p) replies bypass the director" ">= 18 requests in, >= 18 replies to the router, <= 2 frames back to the director" \
       "to knode $kntx, back $knrx, to router $out"
fi

# -- MSS clamping on the SYN-ACK: the client's connection uses the pod's advertised 1390 --------
if command -v ss >/dev/null; then
  (sleep 20 | nsx client nc $VIP 80 >/dev/null 2>&1) &
  wait_until 15 sh -c "/usr/sbin/ip netns exec client ss -tn state established | grep -q $VIP:80"
  nsx client ss -tin > /tmp/p.ss 2>&1
  cat /tmp/p.ss
  mss=$(grep -o '[^a-z]mss:[0-9]*' /tmp/p.ss | head -1 | tr -dc 'a-z:0-9')
  # ss's mss is what the client sends: the SYN-ACK's 1390 less 12 bytes of TCP timestamps
  # (unclamped it would be 1450 - 40 - 12 = 1398; the client's own path allows 1448).
  check_eq "(p) the client's connection took the clamped MSS from the SYN-ACK (1390 - 12)" "mss:1378" "$mss"
  wait
else
  fail "(p) MSS visible on the client" "ss in the guest (tests/vm/lib/host.sh copies it)" "no ss"
fi

# -- a pod restarted in a new namespace is configured again by `run` ----------------------------
mkdir -p $BK_STATE
bk run $M --pod-resync 1s --metrics-addr 127.0.0.1:0 > /tmp/p.run.log 2>&1 &
runpid=$!
ip -n knode link del veth11
ip netns del $UA
pod_up $UA 11 pod-a
wait_view $UA "$want" 30
check_eq "(p) pod-a restarted (new namespace): configured again by run" "$want" "$(pod_view $UA)"
ans=$(fetch_n 4 http://$VIP/)
check_eq "(p) after the restart both pods answer again" "4" "$(( $(count pod-a $ans) + $(count pod-b $ans) ))"

# -- removal: pod-b leaves the service; only what balanced added goes ----------------------------
ip -n $UB addr add 203.0.113.77/32 dev tunl0
manifest $M/web.yaml dsr-web $VIP "$(service "$(backend 10.244.1.11 $UA knode)")"
gone="addr=203.0.113.77/32  link=UP,LOWER_UP mtu 1430  rp=00 rule=0 route="
wait_view $UB "$gone" 20
check_eq "(p) pod-b removed from the service: VIP, rule and route gone, foreign address kept" \
  "$gone" "$(pod_view $UB)"
check_eq "(p) pod-a keeps its VIP" "$want" "$(pod_view $UA)"

# -- a pod namespace that vanishes is a logged skip, not a crash --------------------------------
manifest $M/web.yaml dsr-web $VIP "$(service "$(backend 10.244.1.11 $UA knode; backend 10.244.1.12 $UB knode)")"
ip -n knode link del veth11
ip netns del $UA
sleep 3
if kill -0 $runpid 2>/dev/null; then pass "(p) run survives a pod namespace that disappeared"
else fail "(p) run survives a pod namespace that disappeared" "the process still running" "$(tail -5 /tmp/p.run.log)"; fi
wait_until 20 sh -c "/usr/sbin/ip -n $UB -o addr show dev tunl0 | grep -q $VIP/32" \
  && pass "(p) pod-b back in the service gets the VIP again" \
  || fail "(p) pod-b back in the service gets the VIP again" "$VIP/32 on pod-b's tunl0" "$(pod_view $UB)"
# -- a pod found through /proc: a process in a cgroup naming the pod (kubelet's cgroupfs layout)
UD=0a1b2c3d-0000-4000-8000-00000000000d
ip netns add pod-d-tmp
/usr/sbin/ip netns exec pod-d-tmp sleep 600 &   # ip execs sleep: same PID, in the namespace
podd=$!
mkdir -p /sys/fs/cgroup
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
mkdir -p /sys/fs/cgroup/kubepods/burstable/pod$UD
wait_until 5 sh -c "[ \"\$(readlink /proc/$podd/ns/net)\" != \"\$(readlink /proc/1/ns/net)\" ]"
echo $podd > /sys/fs/cgroup/kubepods/burstable/pod$UD/cgroup.procs
ip netns del pod-d-tmp   # only the name goes: the process keeps the namespace
cat /proc/$podd/cgroup
manifest $M/d.yaml dsr-d 198.51.100.52 "$(service "$(backend 10.244.1.14 $UD knode 0)")"
if wait_until 20 sh -c "nsenter --net=/proc/$podd/ns/net /usr/sbin/ip -o addr show dev tunl0 | grep -q 198.51.100.52/32"; then
  pass "(p) a pod found by its cgroup under /proc (no named namespace) is configured"
else fail "(p) a pod found by its cgroup under /proc is configured" "198.51.100.52/32 on its tunl0" \
  "$(nsenter --net=/proc/$podd/ns/net /usr/sbin/ip -o addr show dev tunl0; tail -5 /tmp/p.run.log)"; fi
kill $podd 2>/dev/null

# -- GUE: a FOU receive port in pod-b feeds tunl0; the largest overhead (32) sets the MTU -------
manifest $M/gue.yaml dsr-gue 198.51.100.51 "  - protocol: TCP
    port: 80
    scheduler: rr
    forwarding:
      method: tunnel
      encapsulation: gue
      port: 6080
    backends:
$(backend 10.244.1.12 $UB knode)"
bal apply $M > /tmp/p.apply-gue 2>&1
check_exit "(p) director: apply a GUE-tunnelled service" 0 $? /tmp/p.apply-gue
if wait_until 20 sh -c "/usr/sbin/ip -n $UB fou show | grep -q 'port 6080 gue'"; then
  pass "(p) pod-b got the FOU port 6080 in GUE mode"
else fail "(p) pod-b got the FOU port 6080 in GUE mode" "port 6080 gue" "$(ip -n $UB fou show 2>&1; tail -5 /tmp/p.run.log)"; fi
gue="addr=$VIP/32 198.51.100.51/32 203.0.113.77/32  link=UP,LOWER_UP mtu 1418  rp=00 rule=1 route=default via 10.244.1.1 dev eth0 proto 177 advmss 1378"
wait_view $UB "$gue" 10
check_eq "(p) pod-b: tunl0 MTU 1450-32 and advmss 1378 with GUE" "$gue" "$(pod_view $UB)"
check_eq "(p) client -> 198.51.100.51:80 over GUE answered by pod-b" "pod-b pod-b" "$(fetch_n 2 http://198.51.100.51/)"

# -- GRE: gre0 up with MTU 1450-24 holds the VIP; the route keeps GUE's larger overhead -------
manifest $M/gre.yaml dsr-gre 198.51.100.53 "  - protocol: TCP
    port: 80
    scheduler: rr
    forwarding:
      method: tunnel
      encapsulation: gre
    backends:
$(backend 10.244.1.12 $UB knode)"
bal apply $M > /tmp/p.apply-gre 2>&1
check_exit "(p) director: apply a GRE-tunnelled service" 0 $? /tmp/p.apply-gre
greview() {
  # (the kernel adds IPv6 link-local addresses to gre0 once it is up: not shown)
  echo "addr=$(ip -n $UB -4 -o addr show dev gre0 | awk '{print $4}' | tr '\n' ' ')" \
       "link=$(ip -n $UB -o link show dev gre0 | grep -o 'UP,LOWER_UP\|mtu [0-9]*' | tr '\n' ' ')" \
       "rp=$(nsx $UB cat /proc/sys/net/ipv4/conf/gre0/rp_filter)" \
       "advmss=$(ip -n $UB route show table 4177 | grep -o 'advmss [0-9]*')"
}
wantgre="addr=198.51.100.53/32  link=UP,LOWER_UP mtu 1426  rp=0 advmss=advmss 1378"
n=0; while [ "$(greview)" != "$wantgre" ] && [ $n -lt 40 ]; do usleep 500000; n=$((n + 1)); done
check_eq "(p) pod-b: the GRE VIP on gre0, its MTU and rp_filter" "$wantgre" "$(greview)"
warm http://198.51.100.53/   # neighbours first
check_eq "(p) client -> 198.51.100.53:80 over GRE answered by pod-b" "pod-b pod-b" "$(fetch_n 2 http://198.51.100.53/)"

# -- IPv6 VIP to an IPv4 pod address: IPv6-in-IPv4, received by sit0; MSS 1450 - 20 - 60 -----
V6=2001:db8:100::50
manifest $M/v6.yaml dsr-v6 $V6 "$(service "$(backend 10.244.1.12 $UB knode)")"
bal apply $M > /tmp/p.apply-v6 2>&1
check_exit "(p) director: apply an IPv6 VIP tunnelled to an IPv4 pod address" 0 $? /tmp/p.apply-v6
v6view() {
  # (bringing sit0 up makes the kernel add IPv4-compatible ::a.b.c.d/96 addresses: not shown)
  echo "addr=$(ip -n $UB -o addr show dev sit0 | awk '$4 ~ /\/128$/ {print $4}' | tr '\n' ' ')" \
       "link=$(ip -n $UB -o link show dev sit0 | grep -o 'UP,LOWER_UP\|mtu [0-9]*' | tr '\n' ' ')" \
       "rule=$(ip -n $UB -6 rule show | grep -c "from $V6 lookup 4177")" \
       "route=$(ip -n $UB -6 route show table 4177 | tr -s ' ' | sed 's/ pref medium//; s/ $//')"
}
want6="addr=$V6/128  link=UP,LOWER_UP mtu 1430  rule=1 route=default via 2001:db8:244::1 dev eth0 proto 177 metric 1024 advmss 1370"
n=0; while [ "$(v6view)" != "$want6" ] && [ $n -lt 40 ]; do usleep 500000; n=$((n + 1)); done
check_eq "(p) pod-b: the IPv6 VIP on sit0, its MTU, rule and MSS route (advmss 1370)" "$want6" "$(v6view)"
warm "http://[$V6]/"   # neighbours first, as above
check_eq "(p) client -> [$V6]:80 answered by pod-b (IPv6 in IPv4)" "pod-b pod-b" "$(fetch_n 2 "http://[$V6]/")"

# -- IPv6 to the pod's IPv6 address: the director reaches pod-b at 2001:db8:244::12 -----------
ip -n knode -6 addr add 2001:db8:2::30/64 dev eth0 nodad
ip -6 route add 2001:db8:244::/64 via 2001:db8:2::30
V6I=2001:db8:100::51 V6G=2001:db8:100::52 V6U=2001:db8:100::53
to_pod_b6() {  # to_pod_b6 ENCAPSULATION [GUE_PORT]: TCP:80 tunnelled to pod-b's IPv6 address
  port=""
  [ -n "${2:-}" ] && port="      port: $2"
  cat <<YAML
  - protocol: TCP
    port: 80
    scheduler: rr
    forwarding:
      method: tunnel
      encapsulation: $1
$port
    backends:
$(backend 2001:db8:244::12 $UB knode)
YAML
}
manifest $M/v6-ipip.yaml dsr-v6-ipip $V6I "$(to_pod_b6 ipip)"
manifest $M/v6-gre.yaml dsr-v6-gre $V6G "$(to_pod_b6 gre)"
manifest $M/v6-gue.yaml dsr-v6-gue $V6U "$(to_pod_b6 gue 6081)"
bal apply $M > /tmp/p.apply-v6b 2>&1
check_exit "(p) director: apply IPv6 VIPs tunnelled to an IPv6 pod address (ipip, gre, gue)" 0 $? /tmp/p.apply-v6b
ipvsadm -Ln | grep -A1 -e "$V6I" -e "$V6G" -e "$V6U"
v6pod() {  # what balanced set in pod-b for IPv6 outer headers, one line
  # (link-local addresses the kernel adds to devices that come up: not shown)
  { echo "ip6tnl0=$(ip -n $UB -6 -o addr show dev ip6tnl0 | awk '$4 ~ /\/128$/ {print $4}' | sort | tr '\n' ' ')"
    ip -n $UB -o link show dev ip6tnl0 | grep -o 'UP,LOWER_UP\|mtu [0-9]*'
    echo "ip6gre0=$(ip -n $UB -6 -o addr show dev ip6gre0 | awk '$4 ~ /\/128$/ {print $4}' | tr '\n' ' ')"
    ip -n $UB -o link show dev ip6gre0 | grep -o 'UP,LOWER_UP\|mtu [0-9]*'
    echo "fou6=$(ip -n $UB fou show | grep -c 'port 6081 gue')"
    echo "rules=$(ip -n $UB -6 rule show | grep -c 'lookup 4177')"
    ip -n $UB -6 route show table 4177 | grep -o 'advmss [0-9]*'
  } 2>&1 | tr '\n' ' ' | tr -s ' ' | sed 's/ $//'
}
# ip6tnl0 carries IPv6-in-IPv6 (40) and GUE (40 + 8 + 4): MTU 1450 - 52; ip6gre0: 1450 - 44;
# the IPv6 MSS route takes the largest IPv6 overhead: 1450 - 52 - 60. Four IPv6 VIPs, four rules.
want6b="ip6tnl0=$V6I/128 $V6U/128 UP,LOWER_UP mtu 1398 ip6gre0=$V6G/128 UP,LOWER_UP mtu 1406 fou6=1 rules=4 advmss 1338"
n=0; while [ "$(v6pod)" != "$want6b" ] && [ $n -lt 40 ]; do usleep 500000; n=$((n + 1)); done
check_eq "(p) pod-b: ip6tnl0 and ip6gre0 up with their VIPs and MTUs, FOU -6 port, rules, advmss" \
  "$want6b" "$(v6pod)"
for v in $V6I $V6G $V6U; do warm "http://[$v]/"; done   # neighbours first
devrx() { nsx $UB cat /sys/class/net/$1/statistics/rx_packets; }
knrx0=$(rx kn-lan) kntx0=$(tx kn-lan) out0=$(nsx knode cat /sys/class/net/eth1/statistics/tx_packets)
t6rx0=$(devrx ip6tnl0) g6rx0=$(devrx ip6gre0)
ans="$(fetch_n 2 "http://[$V6I]/") / $(fetch_n 2 "http://[$V6G]/") / $(fetch_n 2 "http://[$V6U]/")"
check_eq "(p) client -> [$V6I] (ip6ip6), [$V6G] (GRE), [$V6U] (GUE) over IPv6: pod-b answers" \
  "pod-b pod-b / pod-b pod-b / pod-b pod-b" "$ans"
knrx=$(( $(rx kn-lan) - knrx0 )) kntx=$(( $(tx kn-lan) - kntx0 ))
out=$(( $(nsx knode cat /sys/class/net/eth1/statistics/tx_packets) - out0 ))
t6rx=$(( $(devrx ip6tnl0) - t6rx0 )) g6rx=$(( $(devrx ip6gre0) - g6rx0 ))
echo "IPv6: director -> knode frames: $kntx; knode -> director: $knrx; knode -> router: $out;" \
     "decapsulated by pod-b's ip6tnl0: $t6rx, ip6gre0: $g6rx"
if [ $kntx -ge 18 ] && [ $out -ge 18 ] && [ $knrx -le 2 ] && [ $t6rx -ge 12 ] && [ $g6rx -ge 6 ]; then
  pass "(p) IPv6 replies bypass the director: $kntx frames to the knode, $knrx back, $out to the router; ip6tnl0 took $t6rx, ip6gre0 $g6rx"
else
  fail "(p) IPv6 replies bypass the director" \
       ">= 18 in, >= 18 to the router, <= 2 back; >= 12 decapsulated by ip6tnl0, >= 6 by ip6gre0" \
       "to knode $kntx, back $knrx, to router $out, ip6tnl0 $t6rx, ip6gre0 $g6rx"
fi

# MSS clamping over IPv6: pod-b's SYN-ACK from [$V6I] carries advmss 1338 (1450 - 52 - 60), and
# the client sends 1338 less 12 bytes of timestamps (unclamped: 1450 - 60 - 12 = 1378).
(sleep 20 | nsx client nc $V6I 80 >/dev/null 2>&1) &
ncpid=$!
wait_until 15 sh -c "/usr/sbin/ip netns exec client ss -tn state established | grep -q '$V6I\]:80'"
nsx client ss -tin > /tmp/p.ss6 2>&1
cat /tmp/p.ss6
mss=$(grep -o '[^a-z]mss:[0-9]*' /tmp/p.ss6 | head -1 | tr -dc 'a-z:0-9')
check_eq "(p) IPv6: the client's connection to [$V6I] took the clamped MSS (1338 - 12)" "mss:1326" "$mss"
kill $ncpid 2>/dev/null

# -- the backend role's own endpoint and status ---------------------------------------------------
# pod-a's namespace is gone and pod-d's process was killed: both skipped; pod-b holds 7 VIPs
# (tunl0: .50 .51, gre0: .53, sit0: ::50, ip6tnl0: ::51 ::53, ip6gre0: ::52).
addr=$(cat $BK_STATE/metrics-address 2>/dev/null)
get() { wget -q -O - "http://$addr$1" 2>/dev/null; }
check "(p) backend role: /readyz answers 200 after its first pass" get /readyz
get /status > /tmp/p.status.json
get /metrics > /tmp/p.metrics
grep '^balanced_backend_' /tmp/p.metrics | grep -v _bucket
check_eq "(p) backend /metrics: pods by state and VIPs configured" \
  "balanced_backend_pods{state=\"configured\"} 1 balanced_backend_pods{state=\"skipped\"} 2 balanced_backend_pods{state=\"failed\"} 0 balanced_backend_vips 7" \
  "$(grep -e '^balanced_backend_pods' -e '^balanced_backend_vips' /tmp/p.metrics | tr '\n' ' ' | sed 's/ $//')"
if grep -q '^balanced_backend_actions_total{kind="addAddress",result="ok"} [1-9]' /tmp/p.metrics \
   && grep -q '^balanced_backend_converge_duration_seconds_count [1-9]' /tmp/p.metrics; then
  pass "(p) backend /metrics counts applied actions and passes"
else fail "(p) backend /metrics counts applied actions and passes" "addAddress ok > 0, passes > 0" "$(cat /tmp/p.metrics)"; fi
if grep -A1 "\"vip\": \"$V6G\"" /tmp/p.status.json | grep -q '"device": "ip6gre0"' \
   && grep -q "\"netns\": \"/run/netns/$UB\"" /tmp/p.status.json \
   && grep -q '"skipped": "no network namespace found on this node"' /tmp/p.status.json; then
  pass "(p) backend /status: pod-b's netns and VIPs by device, pod-a skipped with its reason"
else fail "(p) backend /status lists pods, devices and skips" "$V6G on ip6gre0, /run/netns/$UB, a skip" "$(cat /tmp/p.status.json)"; fi
balanced status --role backend --state-dir $BK_STATE > /tmp/p.status.txt 2>&1
cat /tmp/p.status.txt
if grep -q "^pod default/web-$UB (uid $UB): configured" /tmp/p.status.txt \
   && grep -q "vip $V6I on ip6tnl0" /tmp/p.status.txt && grep -q "tunnel gue port 6081 over IPv6" /tmp/p.status.txt; then
  pass "(p) balanced status --role backend shows pod-b configured, its tunnels and VIPs"
else fail "(p) balanced status --role backend" "pod-b configured, vip $V6I on ip6tnl0, gue over IPv6" "$(cat /tmp/p.status.txt)"; fi

kill $runpid; wait $runpid 2>/dev/null
tail -20 /tmp/p.run.log

for ns in $UB $UC knode; do ip netns del $ns 2>/dev/null; done
ip route del 10.244.1.0/24 2>/dev/null
ip -6 route del 2001:db8:244::/64 2>/dev/null
ip -n router link del eth2 2>/dev/null
