# (b) with `balanced run`: drift inside vipRanges (a destination deleted, a stray destination,
# service and address added by hand) is repaired at the next resync; a service and an address
# OUTSIDE vipRanges stay untouched throughout; manifest edits (weight change, backend added,
# service removed) converge while traffic flows without a failed request.
M=/tmp/b/manifests
svc() {  # svc PORT BACKENDS_YAML
  printf '  - protocol: TCP\n    port: %s\n    scheduler: wrr\n    forwarding:\n      method: masquerade\n    backends:\n%s\n' "$1" "$2"
}
be() { printf '    - address: %s\n      port: 80\n      weight: %s\n' "$1" "$2"; }
manifest $M/web.yaml web 198.51.100.10 "$(svc 80 "$(be 192.0.2.11 1; be 192.0.2.12 1)"; svc 8080 "$(be 192.0.2.11 1)")"

# foreign state, outside the node's ranges, on the very link the engine manages
ip link add balanced0 type dummy
ip link set balanced0 up
ip addr add 10.99.0.1/32 dev balanced0
ipvsadm -A -t 10.99.0.1:80 -s rr
ipvsadm -a -t 10.99.0.1:80 -r 192.0.2.13:80 -m -w 2
foreign_save > /tmp/b.foreign
foreign_ok() { [ "$(foreign_save)" = "$(cat /tmp/b.foreign)" ] && link_addrs | grep -qx 10.99.0.1/32; }

cat > /tmp/b.want1 <<EOF2
-A -t 198.51.100.10:80 -s wrr
-a -t 198.51.100.10:80 -r 192.0.2.11:80 -m -w 1
-a -t 198.51.100.10:80 -r 192.0.2.12:80 -m -w 1
-A -t 198.51.100.10:8080 -s wrr
-a -t 198.51.100.10:8080 -r 192.0.2.11:80 -m -w 1
EOF2
bal_run_start --dataplane kernel $M
if wait_until 30 same_as /tmp/b.want1; then pass "(b) balanced run converges the manifests"
else fail "(b) balanced run converges the manifests" "$(sort /tmp/b.want1)" "$(owned_save; tail -20 $BAL_STATE.run.log)"; fi
check "(b) VIP 198.51.100.10 announced on balanced0" has_addr 198.51.100.10/32
check "(b) foreign service and address untouched after converging" foreign_ok

stamp "drift by hand"
ipvsadm -d -t 198.51.100.10:80 -r 192.0.2.12:80
ipvsadm -a -t 198.51.100.10:80 -r 192.0.2.13:80 -m -w 1
ipvsadm -A -t 198.51.100.99:80 -s rr
ip addr add 198.51.100.99/32 dev balanced0
t0=$(cut -d' ' -f1 /proc/uptime)
if wait_until 20 same_as /tmp/b.want1; then
  pass "(b) drift repaired at the next resync (after $(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $t0}")s; resyncInterval 2s)"
else fail "(b) drift repaired at the next resync" "$(sort /tmp/b.want1)" "$(owned_save)"; fi
if wait_until 10 not has_addr 198.51.100.99/32; then
  pass "(b) stray address 198.51.100.99 inside vipRanges removed"
else fail "(b) stray address 198.51.100.99 inside vipRanges removed" "not on balanced0" "$(link_addrs)"; fi
grep -qi drift $BAL_STATE.run.log && pass "(b) the repair is logged as drift" \
  || fail "(b) the repair is logged as drift" "a log line saying drift" "$(tail -20 $BAL_STATE.run.log)"
check "(b) foreign service and address untouched after the repair" foreign_ok

stamp "manifest edits under traffic"
rm -f /tmp/b.stop /tmp/b.traffic
( while [ ! -f /tmp/b.stop ]; do fetch http://198.51.100.10/ >> /tmp/b.traffic; done ) &
tpid=$!
wait_until 10 test -s /tmp/b.traffic
manifest $M/web.yaml web 198.51.100.10 "$(svc 80 "$(be 192.0.2.11 3; be 192.0.2.12 1)"; svc 8080 "$(be 192.0.2.11 1)")"
sed '2s/-w 1$/-w 3/' /tmp/b.want1 > /tmp/b.want2
if wait_until 15 same_as /tmp/b.want2; then pass "(b) weight change converges"
else fail "(b) weight change converges" "$(sort /tmp/b.want2)" "$(owned_save)"; fi
manifest $M/web.yaml web 198.51.100.10 "$(svc 80 "$(be 192.0.2.11 3; be 192.0.2.12 1; be 192.0.2.13 1)"; svc 8080 "$(be 192.0.2.11 1)")"
{ cat /tmp/b.want2; echo "-a -t 198.51.100.10:80 -r 192.0.2.13:80 -m -w 1"; } > /tmp/b.want3
if wait_until 15 same_as /tmp/b.want3; then pass "(b) added backend converges"
else fail "(b) added backend converges" "$(sort /tmp/b.want3)" "$(owned_save)"; fi
manifest $M/web.yaml web 198.51.100.10 "$(svc 80 "$(be 192.0.2.11 3; be 192.0.2.12 1; be 192.0.2.13 1)")"
grep -v ':8080' /tmp/b.want3 > /tmp/b.want4
if wait_until 15 same_as /tmp/b.want4; then pass "(b) removed service converges"
else fail "(b) removed service converges" "$(sort /tmp/b.want4)" "$(owned_save)"; fi
touch /tmp/b.stop; wait $tpid
total=$(wc -w < /tmp/b.traffic); bad=$(count - $(cat /tmp/b.traffic))
if [ "$total" -ge 5 ] && [ "$bad" = 0 ]; then pass "(b) traffic flowed during the edits ($total requests, none failed)"
else fail "(b) traffic flowed during the edits" ">= 5 requests, 0 failed" "$total requests, $bad failed: $(cat /tmp/b.traffic | tr '\n' ' ')"; fi
check "(b) VIP address kept (port 80 remains)" has_addr 198.51.100.10/32
check "(b) foreign service and address untouched at the end" foreign_ok
check "(b) balanced run is still running" kill -0 $BAL_RUN_PID
bal_run_stop
