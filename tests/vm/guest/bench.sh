# /vm/bench.sh — the performance comparison of issue 4, in ONE guest boot (tests/vm/bench):
#   1. keepalived: start → the last virtual server holds all its destinations
#   2. ipvsadm -Sn: dump time of that full state; keepalived reload (SIGHUP) with one weight
#      changed → visible in the kernel
#   3. balanced run from empty, measured as keepalived is: start → the last VIP announced
#      (the plan's last action: every service, destination and address is in before it)
#   4. no-change resync of that running daemon (SIGHUP: rescan, observe, plan), vs ipvsadm -Sn
#   5. one weight changed in one manifest while that daemon runs: file mtime → the run log's
#      line for that change, confirmed in the kernel
#   6. the one-shot commands on the same state: balanced plan (parses every file), then
#      balanced apply from empty (with its verification: a second full observation)
#   7. step 3 again with every VIP on one link (vipLinks: 1; steps 3-6 use 16)
# Prints "BENCH <key> <seconds> ..." lines. Every timed step starts from a freshly loaded IPVS
# (deleted destinations stay on a "trash" list that every add scans).
. /vm/lib.sh
. /bench/bench.env
B=/bench
up() { cut -d' ' -f1 /proc/uptime; }
since() { awk "BEGIN{printf \"%.2f\", $(up) - $1}"; }
bench() { echo "BENCH $*"; }
IPVS_MODS=$(grep '^ip_vs' /lib/modules/load-order | tr '\n' ' ')
fresh_ipvs() {
  ipvsadm -C
  for l in $(ip -o link show | awk -F': ' '$2 ~ /^balanced0(-[0-9]+)?$/ {print $2}'); do ip link del "$l"; done
  rev=""; for m in $IPVS_MODS; do rev="$m $rev"; done
  for m in $rev; do rmmod $m; done
  for m in $IPVS_MODS; do insmod /lib/modules/$m.ko; done
}
dests_of() { ipvsadm -Ln -t $1:80 2>/dev/null | grep -c -- '->.*Route'; }
total_dests() { ipvsadm -Ln | grep -c -- '->.*Route'; }
echo "BENCH-INFO $NSVC services x $NDEST destinations; $(balanced --version); $(keepalived --version 2>&1 | head -1)"

# --- 1. keepalived --------------------------------------------------------------------------
fresh_ipvs
cp $B/keepalived.conf /tmp/ka.conf
t0=$(up)
keepalived -C -n -l -G -R -f /tmp/ka.conf -p /run/ka.pid -c /run/ka-check.pid > /tmp/ka.log 2>&1 &
ka=$!
while [ "$(dests_of $LAST_VIP)" != "$NDEST" ]; do usleep 200000; done
bench keepalived_converge $(since $t0) "(last virtual server complete; poll 0.2 s)"
n=$(total_dests)
check_eq "keepalived reached the full state" $((NSVC * NDEST)) "$n"
# 2. ipvsadm -Sn of the full state
for k in 1 2 3; do t0=$(up); ipvsadm -Sn > /dev/null; bench ipvsadm_Sn $(since $t0); done
# 5b. keepalived reload with one weight changed (the last virtual server's first real server)
awk '/^virtual_server/ {n = NR} {l[NR] = $0} END {
  for (i = 1; i <= NR; i++) { if (i > n && !done && l[i] ~ /weight 1$/) { sub(/weight 1$/, "weight 2", l[i]); done = 1 }; print l[i] } }' \
  $B/keepalived.conf > /tmp/ka2.conf
cp /tmp/ka2.conf /tmp/ka.conf
t0=$(up)
kill -HUP $(cat /run/ka.pid)
while ! ipvsadm -Ln -t $LAST_VIP:80 | grep -q 'Route *2 '; do usleep 200000; done
bench keepalived_reload_weight_visible $(since $t0) "(SIGHUP -> ipvsadm shows it; poll 0.2 s)"
# keepalived's checker child removes every virtual server when it stops: wait for both
# processes to be gone, or that cleanup competes with balanced for the guest's only CPU.
t0=$(up); kill -TERM $ka
wait_until 600 sh -c '! pidof keepalived'
bench keepalived_stopped_after $(since $t0) "(its cleanup of 10,000 virtual servers)"
sleep 1

# The kernel's share of the converge, from the debug lines of each pipelined batch.
answered_totals() {
  sed 's/\x1b\[[0-9;]*m//g' $BAL_STATE.run.log | awk '
    / IPVS requests answered / { match($0, /requests=[0-9]+/); n += substr($0, RSTART + 9, RLENGTH - 9)
                                 match($0, /seconds=[0-9.e-]+/); s += substr($0, RSTART + 8, RLENGTH - 8) }
    / address changes answered / { match($0, /changes=[0-9]+/); an += substr($0, RSTART + 8, RLENGTH - 8)
                                   match($0, /seconds=[0-9.e-]+/); as += substr($0, RSTART + 8, RLENGTH - 8); links++ }
    END { printf "BENCH-INFO kernel answered %d IPVS requests in %.2f s, %d address changes on %d link batches in %.2f s\n", n, s, an, links, as }'
}

# --- 3. balanced run from empty ------------------------------------------------------------------
# Log timestamps are wall-clock; /tmp/t0's mtime is the start on the same clock.
stamp() { echo "$1" | awk '{split($1, a, ":"); printf "%.4f", a[1] * 3600 + a[2] * 60 + a[3]}'; }
log_time() { stamp "$(echo "$1" | sed 's/^[0-9-]*T\([0-9:.]*\)Z.*/\1/')"; }
fresh_ipvs
BAL_CONFIG=$B/node.yaml
rm -rf "$BAL_STATE"; mkdir -p "$BAL_STATE"
# the daemon watches the manifests' parent too (symlink swaps): keep it quiet
mkdir -p /tmp/bm; cp -r $B/manifests /tmp/bm/m
touch /tmp/t0
start=$(stamp "$(stat -c %y /tmp/t0 | cut -d' ' -f2)")
t0=$(up)
BALANCED_LOG=info,balanced_engine::daemon=debug,balanced_engine::kernel=debug bal_run_start --dataplane kernel --debounce 20ms /tmp/bm/m
# Two end points. The kernel's, polled every 0.2 s as keepalived's is: the last VIP is local
# (one route lookup by the static busybox `ip`, lighter than keepalived's poll; addresses go
# in after every IPVS request, in plan order, so the last one means all). And the last VIP's
# change line, which carries the time the kernel answered it.
vip_local() { case "$(busybox ip route get "$LAST_VIP" 2>/dev/null)" in local*) return 0;; esac; return 1; }
while ! vip_local; do usleep 200000; done
polled=$(since $t0)
# Polls read only the log's tail: a grep of the whole log (120,000 lines) every 0.2 s would
# take the guest's only CPU from the daemon it times.
logged() { tail -c 16384 $BAL_STATE.run.log | grep -q "$1"; }
last_resync() { tail -c 16384 $BAL_STATE.run.log | grep 'resynced:' | tail -1; }
wait_until 3000 logged "address $LAST_VIP on balanced0"
line=$(grep -m1 "address $LAST_VIP on balanced0" $BAL_STATE.run.log)
first=$(grep -m1 ' converging ' $BAL_STATE.run.log)
bench balanced_run_converge_from_empty "$(awk "BEGIN{printf \"%.2f\", $(log_time "$line") - $start}")" \
  "(start -> last VIP announced, its change line's time; parse+observe+plan until the first action: $(awk "BEGIN{printf \"%.2f\", $(log_time "$first") - $start}") s)"
bench balanced_run_converge_from_empty_polled "$polled" "(start -> the last VIP is local in the kernel; poll 0.2 s, as keepalived's)"
check_eq "balanced reached the full state" $((NSVC * NDEST)) "$(total_dests)"
check_eq "balanced announced every VIP" "$NSVC" \
  "$(ip -o addr show scope global | grep -c -E '^[0-9]+: balanced0(-[0-9]+)? ')"
answered_totals
echo "t0 $(stat -c %y /tmp/t0 | cut -d' ' -f2)"
grep -v ' INFO [+~-] ' $BAL_STATE.run.log | head -8
grep ' INFO [+~-] ' $BAL_STATE.run.log | sed -n '1p;$p'

# --- 4. no-change resync of the running daemon ------------------------------------------------------
for k in 1 2 3; do
  before=$(last_resync)
  bal_resync
  wait_until 600 sh -c '[ "$(tail -c 16384 '"$BAL_STATE"'.run.log | grep resynced: | tail -1)" != "$0" ]' "$before"
  line=$(last_resync)
  bench balanced_resync_no_change "$(echo "$line" | sed 's/.*seconds=\([0-9.]*\).*/\1/')" \
    "($(echo "$line" | grep -o 'actions=[0-9]*'); $(echo "$line" | grep -o 'rescan=[0-9.e-]* observe=[0-9.e-]* drift_and_plan=[0-9.e-]*'))"
done
for k in 1 2; do t0=$(up); ipvsadm -Sn > /dev/null; bench ipvsadm_Sn_after_balanced $(since $t0); done

# --- 5. one weight change under balanced run ------------------------------------------------------
sleep 2
t0=$(up)
sed 's/^    - address: \(10\.[0-9.]*\.1\)$/    - address: \1\n      weight: 2/' /tmp/bm/m/$LAST_FILE > /tmp/edit.yaml
mv /tmp/edit.yaml /tmp/bm/m/$LAST_FILE
# mtime: sed wrote the new version (before `mv` started); ctime: the rename put it in place,
# the moment the change exists in the watched directory.
mtime=$(stat -c %y /tmp/bm/m/$LAST_FILE | cut -d' ' -f2)
ctime=$(stat -c %z /tmp/bm/m/$LAST_FILE | cut -d' ' -f2)
while ! ipvsadm -Ln -t $LAST_VIP:80 | grep -q 'Route *2 '; do usleep 20000; done
bench weight_change_visible_polled $(since $t0) "(ipvsadm poll, includes its own start-up)"
line=$(grep 'weight 2' $BAL_STATE.run.log | head -1)
bench weight_change_file_to_applied "$(awk "BEGIN{printf \"%.4f\", $(log_time "$line") - $(stamp "$ctime")}")" \
  "(rename into the directory $ctime -> log line, debounce 20ms; from sed's write (mtime): $(awk "BEGIN{printf \"%.4f\", $(log_time "$line") - $(stamp "$mtime")}") s)"
echo "$line"
grep 'manifests changed' $BAL_STATE.run.log | tail -1
bal_run_stop
tail -3 $BAL_STATE.run.log

# --- 6. the one-shot commands -------------------------------------------------------------------------
t0=$(up); bal plan --dataplane kernel /tmp/bm/m > /tmp/plan.log 2>&1; rc=$?
bench balanced_plan_no_change $(since $t0) "rc=$rc (one-shot: parse $NSVC files + observe + plan)"
fresh_ipvs
rm -rf "$BAL_STATE"; mkdir -p "$BAL_STATE"
touch /tmp/t0
t0=$(up)
bal apply --dataplane kernel $B/manifests > /tmp/apply.log 2>&1
rc=$?
bench balanced_apply_from_empty $(since $t0) "rc=$rc (one-shot, with verification)"
# its phases, from the log's timestamps: until "applying" (parse, observe, plan), the actions,
# then verification and the state files
sed 's/\x1b\[[0-9;]*m//g' /tmp/apply.log | awk -v start="$(stat -c %y /tmp/t0 | cut -d' ' -f2)" '
  function t(l,   a) { split(substr(l, 12, 15), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
  BEGIN { split(start, a, ":"); first = a[1] * 3600 + a[2] * 60 + a[3] }
  /^[0-9-]*T[0-9:.]*Z/ { now = t($0)
    if ($0 ~ / applying /) planned = now
    else if ($0 ~ / apply done/) done = now
    else if (planned != "") last = now }
  END { printf "BENCH balanced_apply_phases %.2f parse_observe_plan=%.2f actions=%.2f verify_and_state=%.2f\n", done - first, planned - first, last - planned, done - last }'
tail -3 /tmp/apply.log

# --- 7. balanced run from empty with one VIP link -------------------------------------------------
fresh_ipvs
BAL_CONFIG=$B/node-1link.yaml
rm -rf "$BAL_STATE"; mkdir -p "$BAL_STATE"
touch /tmp/t0
start=$(stamp "$(stat -c %y /tmp/t0 | cut -d' ' -f2)")
BALANCED_LOG=info,balanced_engine::daemon=debug,balanced_engine::kernel=debug bal_run_start --dataplane kernel --debounce 20ms /tmp/bm/m
wait_until 3000 logged "address $LAST_VIP on balanced0"
line=$(grep -m1 "address $LAST_VIP on balanced0" $BAL_STATE.run.log)
bench balanced_run_converge_from_empty_one_link "$(awk "BEGIN{printf \"%.2f\", $(log_time "$line") - $start}")" \
  "(start -> last VIP announced, every VIP on balanced0)"
answered_totals
check_eq "balanced announced every VIP on one link" "$NSVC" "$(ip -o addr show dev balanced0 scope global | wc -l)"
bal_run_stop
