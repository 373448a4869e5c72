# shellcheck shell=sh
# /vm/topology.sh — the guest's test network, built once per boot by topo_up. Everything lives
# inside the guest (it has no network card); addresses are documentation ranges.
#
#   client ns 203.0.113.100/24, 2001:db8:3::64/64 ──(eth1) router ns (eth0) 192.0.2.254, 2001:db8:2::fe
#                                                                   │ bridge lan0
#   director = root ns: lan0 192.0.2.1/24, 2001:db8:2::1/64; VIPs on balanced0 (the engine's)
#   rs1..rs3 ns: 192.0.2.11-13, 2001:db8:2::11-13 on lan0
#
# VIP ranges: 198.51.100.0/24 and 2001:db8:100::/64 (the node config owns them).
# The real servers serve all three forwarding modes at once:
#   - NAT (masquerade): default route via the director, which un-NATs the replies;
#   - DR and IPIP tunnel: the whole VIP range is local on lo (AnyIP route), tunl0 is up, ARP for
#     it is never answered (arp_ignore=1), and replies *from* a VIP take the router (policy rule),
#     not the director (which holds the VIPs and would drop them as martians).
# HTTP: busybox httpd on :80 (and [::]:80) answers the namespace's name (rs1); on ADDRESS:81 it
# answers that address — to tell several backends of one namespace apart.

RS="rs1 rs2 rs3"
V4_LAN=192.0.2 V6_LAN=2001:db8:2
CLIENT4=203.0.113.100 CLIENT6=2001:db8:3::64

nsx() { ns=$1; shift; ip netns exec "$ns" "$@"; }

topo_up() {
  [ -e /run/netns/client ] && return 0
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.ipv6.conf.all.forwarding=1
  sysctl -qw net.ipv6.conf.default.accept_dad=0
  sysctl -qw net.ipv4.conf.all.send_redirects=0
  sysctl -qw net.ipv4.conf.default.send_redirects=0
  ip link add lan0 type bridge
  ip link set lan0 up
  sysctl -qw net.ipv4.conf.lan0.send_redirects=0
  ip addr add $V4_LAN.1/24 dev lan0
  ip addr add $V6_LAN::1/64 dev lan0 nodad
  for ns in client router $RS; do
    ip netns add $ns
    ip -n $ns link set lo up
    nsx $ns sysctl -qw net.ipv6.conf.all.accept_dad=0
    nsx $ns sysctl -qw net.ipv6.conf.default.accept_dad=0
  done
  # router: lan side + client side
  ip link add rt-lan type veth peer name eth0 netns router
  ip link set rt-lan master lan0 up
  ip link add rt-cl type veth peer name eth0 netns client
  ip link set rt-cl netns router
  ip -n router link set rt-cl name eth1
  ip -n router addr add $V4_LAN.254/24 dev eth0
  ip -n router addr add $V6_LAN::fe/64 dev eth0 nodad
  ip -n router addr add 203.0.113.1/24 dev eth1
  ip -n router addr add 2001:db8:3::1/64 dev eth1 nodad
  ip -n router link set eth0 up
  ip -n router link set eth1 up
  nsx router sysctl -qw net.ipv4.ip_forward=1
  nsx router sysctl -qw net.ipv6.conf.all.forwarding=1
  ip -n router route add 198.51.100.0/24 via $V4_LAN.1
  ip -n router -6 route add 2001:db8:100::/64 via $V6_LAN::1
  # client
  ip -n client addr add $CLIENT4/24 dev eth0
  ip -n client addr add $CLIENT6/64 dev eth0 nodad
  ip -n client link set eth0 up
  ip -n client route add default via 203.0.113.1
  ip -n client -6 route add default via 2001:db8:3::1
  # director: the client networks are behind the router
  ip route add 203.0.113.0/24 via $V4_LAN.254
  ip -6 route add 2001:db8:3::/64 via $V6_LAN::fe
  # real servers
  i=10
  for rs in $RS; do
    i=$((i + 1))
    ip link add $rs-lan type veth peer name eth0 netns $rs
    ip link set $rs-lan master lan0 up
    ip -n $rs addr add $V4_LAN.$i/24 dev eth0
    ip -n $rs addr add $V6_LAN::$i/64 dev eth0 nodad
    ip -n $rs link set eth0 up
    ip -n $rs link set tunl0 up
    ip -n $rs route add default via $V4_LAN.1
    ip -n $rs -6 route add default via $V6_LAN::1
    ip -n $rs route add local 198.51.100.0/24 dev lo
    ip -n $rs -6 route add local 2001:db8:100::/64 dev lo
    ip -n $rs rule add from 198.51.100.0/24 table 100
    ip -n $rs route add default via $V4_LAN.254 table 100
    ip -n $rs -6 rule add from 2001:db8:100::/64 table 100
    ip -n $rs -6 route add default via $V6_LAN::fe table 100
    nsx $rs sh -c '
      for k in all default eth0 tunl0; do
        sysctl -qw net.ipv4.conf.$k.rp_filter=0
        sysctl -qw net.ipv4.conf.$k.arp_ignore=1
        sysctl -qw net.ipv4.conf.$k.arp_announce=2
      done
      sysctl -qw net.ipv4.conf.all.accept_redirects=0'
    mkdir -p /www/$rs
    echo $rs > /www/$rs/index.html
    nsx $rs httpd -p 80 -h /www/$rs
    rs_serve_address $rs $V4_LAN.$i
  done
  wait_until 10 sh -c "nsenter --net=/run/netns/router wget -q -O - http://$V4_LAN.13/ | grep -q rs3"
}

# rs_serve_address NS ADDR: add ADDR to NS (if new) and answer it on ADDR:81.
rs_serve_address() {
  ip -n $1 addr add $2/24 dev eth0 2>/dev/null
  mkdir -p /www/$2
  echo $2 > /www/$2/index.html
  nsx $1 httpd -p $2:81 -h /www/$2
}

# fetch URL: one HTTP GET from the client namespace; prints the answer or "-" on failure.
fetch() {
  nsenter --net=/run/netns/client timeout 5 wget -q -O - "$1" 2>/dev/null || echo -
}
# warm URL: GETs until one is answered (at most 7, each up to 5 s), so that every hop's
# neighbour entries exist before a scenario counts answers: under TCG on a busy host a single
# first request was sometimes not enough (scenario p lost a whole count of 6 to it).
warm() {
  k=0
  while [ "$(fetch "$1")" = - ] && [ $k -lt 6 ]; do k=$((k + 1)); done
}
# fetch_n N URL: N GETs, answers on one line.
fetch_n() {
  k=0 all=""
  while [ $k -lt $1 ]; do all="$all $(fetch "$2")"; k=$((k + 1)); done
  echo $all
}
# count WORD LIST...: how many times WORD occurs in the list.
count() { w=$1; shift; n=0; for x in "$@"; do [ "$x" = "$w" ] && n=$((n + 1)); done; echo $n; }
# tunl_rx: IPIP packets the real servers decapsulated so far.
tunl_rx() {
  n=0
  for rs in $RS; do n=$((n + $(nsx $rs cat /sys/class/net/tunl0/statistics/rx_packets))); done
  echo $n
}
