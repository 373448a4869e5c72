# (e) drain: a backend removed from the manifests gets weight 0, takes no new connections, keeps
# its open connection (which still gets its answer), and is deleted once that connection closed.
M=/tmp/e/manifests
VIP=198.51.100.40
be() { printf '    - address: %s\n      port: 80\n' "$1"; }
svc() { printf '  - protocol: TCP\n    port: 80\n    scheduler: rr\n    forwarding:\n      method: masquerade\n    backends:\n%s\n' "$1"; }
manifest $M/drain.yaml drain $VIP "$(svc "$(be 192.0.2.11; be 192.0.2.12)")"
bal_run_start --dataplane kernel $M
wait_until 30 sh -c "ipvsadm -Sn | grep -q -- '-r 192.0.2.12:80'" || { fail "(e) service converged" "2 backends" "$(ipvsadm -Sn; tail $BAL_STATE.run.log)"; }

# A connection held open: it connects now and sends its request only when /tmp/e.go exists
# (busybox httpd waits up to 60 s for a request).
rm -f /tmp/e.go /tmp/e.held
( while [ ! -f /tmp/e.go ]; do usleep 100000; done; printf 'GET / HTTP/1.0\r\n\r\n' ) \
  | nsenter --net=/run/netns/client nc $VIP 80 > /tmp/e.held 2>&1 &
held=$!
wait_until 10 sh -c "ipvsadm -Lnc | grep ESTABLISHED | grep -q ' $VIP:80 '"
D=$(ipvsadm -Lnc | awk -v v="$VIP:80" '$3 == "ESTABLISHED" && $5 == v {split($6, a, ":"); print a[1]; exit}')
case $D in 192.0.2.11) KEEP=192.0.2.12 DNAME=rs1 KNAME=rs2;; 192.0.2.12) KEEP=192.0.2.11 DNAME=rs2 KNAME=rs1;;
  *) fail "(e) the held connection is established through the VIP" "an ESTABLISHED entry" "$(ipvsadm -Lnc)"; touch /tmp/e.go; bal_run_stop; return 0 2>/dev/null || exit 0;; esac
pass "(e) the held connection is established through the VIP (on $D)"

stamp "remove $D from the manifests"
manifest $M/drain.yaml drain $VIP "$(svc "$(be $KEEP)")"
if wait_until 15 sh -c "ipvsadm -Sn | grep -q -- '-r $D:80 -m -w 0\$'"; then pass "(e) removed backend $D gets weight 0"
else fail "(e) removed backend $D gets weight 0" "-r $D:80 -m -w 0" "$(ipvsadm -Sn)"; fi
ans=$(fetch_n 4 http://$VIP/)
check_eq "(e) new connections all go to the remaining backend" "$KNAME $KNAME $KNAME $KNAME" "$ans"
bal_resync; sleep 3
if ipvsadm -Sn | grep -q -- "-r $D:80 "; then pass "(e) drained backend kept while its connection is open (after a resync)"
else fail "(e) drained backend kept while its connection is open" "-r $D:80 still present" "$(ipvsadm -Sn)"; fi
ipvsadm -Ln

touch /tmp/e.go
wait_until 10 sh -c "! kill -0 $held"
if grep -q "^$DNAME\$" /tmp/e.held; then pass "(e) the open connection still got its answer from $DNAME"
else fail "(e) the open connection still got its answer" "$DNAME" "$(cat /tmp/e.held)"; fi
t0=$(cut -d' ' -f1 /proc/uptime)
if wait_until 20 sh -c "! ipvsadm -Sn | grep -q -- '-r $D:80 '"; then
  pass "(e) drained backend deleted once its connection closed (after $(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $t0}")s)"
else fail "(e) drained backend deleted once its connection closed" "no $D in the service" "$(ipvsadm -Ln; ipvsadm -Lnc)"; fi
check "(e) the remaining backend is untouched" sh -c "ipvsadm -Sn | grep -q -- '-r $KEEP:80 -m -w 1\$'"
bal_run_stop
