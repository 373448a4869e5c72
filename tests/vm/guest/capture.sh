# /vm/capture.sh — records the netlink conversation of `ipvsadm` with the real kernel, one
# operation at a time, for the IPVS codec's tests (engine/tests/fixtures/ipvsadm/). Each
# operation runs under strace with hex dumps of every buffer sent and received; the host turns
# them into fixture files (tests/vm/lib/strace2hex.awk). Sourced by /vm/job in capture mode.
. /vm/lib.sh
mkdir -p /tmp/cap
CAPS=0

# cap NAME ipvsadm ARGS...: run it under strace; send the trace, the command, its status and
# output to the host.
cap() {
  name=$1; shift
  strace -f -xx -s 65536 -e trace=sendmsg,sendto,recvmsg,recvfrom -e write=all -e read=all \
    -o /tmp/cap/$name.strace "$@" > /tmp/cap/$name.stdout 2>&1
  rc=$?
  { echo "command: $*"; echo "exit: $rc"; echo "kernel: $(uname -r)"
    echo "ipvsadm: $(ipvsadm --version 2>&1 | head -1)"; sed 's/^/output: /' /tmp/cap/$name.stdout
  } > /tmp/cap/$name.meta
  emit_file "$name.strace" /tmp/cap/$name.strace
  emit_file "$name.meta" /tmp/cap/$name.meta
  echo "capture $name: exit $rc: $*"
  CAPS=$((CAPS+1))
}

ipvsadm -C
ipvsadm --set 0 0 0
# --- services ---------------------------------------------------------------------------------
cap svc-add-tcp4-rr              ipvsadm -A -t 198.51.100.1:80 -s rr
cap svc-add-udp6-wlc             ipvsadm -A -u [2001:db8:100::1]:53 -s wlc
cap svc-add-fwmark4              ipvsadm -A -f 100 -s rr
cap svc-add-fwmark6              ipvsadm -A -f 101 -6 -s sh -b sh-fallback,sh-port
cap svc-add-tcp4-mh-flags        ipvsadm -A -t 198.51.100.2:443 -s mh -b mh-fallback,mh-port
cap svc-add-tcp4-persist         ipvsadm -A -t 198.51.100.3:80 -s wlc -p 300 -M 255.255.255.0
cap svc-add-tcp6-persist         ipvsadm -A -t [2001:db8:100::3]:80 -s wlc -p 300 -M 64
cap svc-add-udp4-ops             ipvsadm -A -u 198.51.100.4:53 -s rr -o
cap svc-add-sctp4                ipvsadm -A --sctp-service 198.51.100.5:9 -s rr
cap svc-add-udp4-pe-sip          ipvsadm -A -u 198.51.100.6:5060 -s rr -p 60 --pe sip
cap svc-edit-sched               ipvsadm -E -t 198.51.100.1:80 -s wrr
cap svc-edit-persist-off         ipvsadm -E -t 198.51.100.3:80 -s wlc
cap svc-edit-mh-flags            ipvsadm -E -t 198.51.100.2:443 -s mh -b mh-port
# --- destinations -----------------------------------------------------------------------------
cap dst-add-masq-weight          ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.11:8080 -m -w 5
cap dst-add-route-thresholds     ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.12:80 -g -w 1 -x 100 -y 50
cap dst-add-tunnel-ipip          ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.13:80 -i -w 2
cap dst-add-tunnel-gue           ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.14:80 -i --tun-type gue --tun-port 6080
cap dst-add-tunnel-gue-csum      ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.15:80 -i --tun-type gue --tun-port 6080 --tun-csum
cap dst-add-tunnel-gue-remcsum   ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.16:80 -i --tun-type gue --tun-port 6081 --tun-remcsum
cap dst-add-tunnel-gre-nocsum    ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.17:80 -i --tun-type gre --tun-nocsum
cap dst-add-tunnel-gre-csum      ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.18:80 -i --tun-type gre --tun-csum
cap dst-add-udp6-masq            ipvsadm -a -u [2001:db8:100::1]:53 -r [2001:db8:2::11]:5353 -m -w 3
cap dst-add-fwmark4-port0        ipvsadm -a -f 100 -r 192.0.2.11 -m
cap dst-add-fwmark6-route        ipvsadm -a -f 101 -6 -r 2001:db8:2::12 -g
cap dst-add-mh                   ipvsadm -a -t 198.51.100.2:443 -r 192.0.2.11:443 -g -w 7
cap dst-add-tcp6-on-v4-tunnel    ipvsadm -a -t 198.51.100.2:443 -r [2001:db8:2::13]:443 -i
cap dst-edit-weight0             ipvsadm -e -t 198.51.100.1:80 -r 192.0.2.11:8080 -m -w 0
cap dst-edit-fwd-thresholds      ipvsadm -e -t 198.51.100.1:80 -r 192.0.2.12:80 -i -w 4 -x 0 -y 0
cap dst-edit-gue-port            ipvsadm -e -t 198.51.100.1:80 -r 192.0.2.14:80 -i --tun-type gue --tun-port 6090
# --- timeouts -----------------------------------------------------------------------------------
cap config-set                   ipvsadm --set 900 120 300
cap config-get                   ipvsadm -Ln --timeout
# --- dumps (the kernel's replies are what the codec must parse) --------------------------------
cap dump-list                    ipvsadm -Ln
cap dump-list-nosort             ipvsadm -Ln --nosort
cap dump-stats                   ipvsadm -Ln --stats --exact
cap dump-one-service             ipvsadm -Ln -t 198.51.100.1:80
cap dump-save                    ipvsadm -Sn
# --- deletions --------------------------------------------------------------------------------
cap dst-del                      ipvsadm -d -t 198.51.100.1:80 -r 192.0.2.11:8080
cap dst-del-v6                   ipvsadm -d -u [2001:db8:100::1]:53 -r [2001:db8:2::11]:5353
cap svc-del-tcp4                 ipvsadm -D -t 198.51.100.3:80
cap svc-del-fwmark6              ipvsadm -D -f 101 -6
# --- errors the kernel returns -------------------------------------------------------------------
cap err-svc-add-exists           ipvsadm -A -t 198.51.100.1:80 -s rr
cap err-svc-del-missing          ipvsadm -D -t 198.51.100.99:80
cap err-svc-edit-missing         ipvsadm -E -t 198.51.100.99:80 -s rr
cap err-svc-add-unknown-sched    ipvsadm -A -t 198.51.100.7:80 -s nosuchsched
cap err-dst-add-exists           ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.12:80 -g
cap err-dst-add-no-service       ipvsadm -a -t 198.51.100.99:80 -r 192.0.2.12:80 -g
cap err-dst-del-missing          ipvsadm -d -t 198.51.100.1:80 -r 192.0.2.99:80
cap err-dst-edit-missing         ipvsadm -e -t 198.51.100.1:80 -r 192.0.2.99:80 -g
cap err-dst-thresholds-range     ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.20:80 -g -x 10 -y 20
cap flush                        ipvsadm -C
cap dump-empty                   ipvsadm -Ln
# --- counters after real traffic: connection counts and (64-bit) stats are non-zero ------------
. /vm/topology.sh
topo_up
ip link add balanced0 type dummy; ip link set balanced0 up
ip addr add 198.51.100.1/32 dev balanced0
ipvsadm -A -t 198.51.100.1:80 -s rr
ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.11:80 -m -w 1
ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.12:80 -m -w 2
echo "traffic: $(fetch_n 6 http://198.51.100.1/)"
sleep 3   # the kernel's rate estimator ticks every 2 s
cap dump-stats-after-traffic     ipvsadm -Ln --stats --exact
cap dump-rate-after-traffic      ipvsadm -Ln --rate --exact
cap dump-conns-after-traffic     ipvsadm -Ln
ipvsadm -C
echo "capture: $CAPS operations recorded"
