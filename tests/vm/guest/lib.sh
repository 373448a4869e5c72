# shellcheck shell=sh
# /vm/lib.sh — helpers every guest script sources: result lines, waiting, the out channel to the
# host, and the `balanced` command line in one place.
#
# Result lines are the lane's contract with tests/vm/run: `PASS: <name>` or `FAIL: <name>`
# followed by indented `expected:` / `seen:` lines. Nothing else may start with PASS:/FAIL:.

# Debian's busybox ash runs its own applets before $PATH; its `ip` has no netns support.
ip() { /usr/sbin/ip "$@"; }

stamp() { echo "T+$(cut -d' ' -f1 /proc/uptime)s $*"; }
pass() { echo "PASS: $1"; }
# fail NAME EXPECTED SEEN
fail() {
  echo "FAIL: $1"
  printf '%s\n' "$2" | sed 's/^/    expected: /'
  printf '%s\n' "$3" | sed 's/^/    seen:     /'
}
# check NAME CMD...: PASS when CMD succeeds.
check() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "command succeeds: $*" "exit status $?"; fi; }
# check_eq NAME EXPECTED SEEN
check_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi; }

# emit_file NAME PATH: send a text file to the host (lands in $VM_DIR/out/NAME).
emit_file() {
  { echo "@@FILE $1"; cat "$2"; echo; echo "@@END"; } > /dev/ttyS1
}

# wait_until SECONDS CMD...: poll every 0.2 s until CMD succeeds; status 1 on timeout.
wait_until() {
  deadline=$(( $(cut -d. -f1 /proc/uptime) + $1 )); shift
  while ! "$@" >/dev/null 2>&1; do
    [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] && return 1
    usleep 200000
  done
}

# ---- balanced ---------------------------------------------------------------------------------
# One state directory per scenario; `bal` passes the node config and state dir every time.
BAL_STATE=${BAL_STATE:-/tmp/bal-state}
BAL_CONFIG=${BAL_CONFIG:-/vm/node.yaml}
bal() {
  cmd=$1; shift
  balanced "$cmd" --config "$BAL_CONFIG" --state-dir "$BAL_STATE" "$@"
}

# bal_run_start DIR...: `balanced run` in the background, log in $BAL_STATE.run.log.
bal_run_start() {
  mkdir -p "$BAL_STATE"
  balanced run --config "$BAL_CONFIG" --state-dir "$BAL_STATE" "$@" \
    > "$BAL_STATE.run.log" 2>&1 &
  BAL_RUN_PID=$!
}
bal_run_stop() {
  [ -n "${BAL_RUN_PID:-}" ] || return 0
  kill -TERM "$BAL_RUN_PID" 2>/dev/null
  wait_until 10 sh -c "! kill -0 $BAL_RUN_PID"
  kill -KILL "$BAL_RUN_PID" 2>/dev/null
  BAL_RUN_PID=""
}
bal_resync() { kill -HUP "$BAL_RUN_PID"; }

# The kernel's view, normalised: ipvsadm -Sn (sorted by ipvsadm), the VIP link's addresses.
ipvs_save() { ipvsadm -Sn; }
# Destinations in the kernel's list order (what mh builds its table from).
ipvs_order() { ipvsadm -Ln --nosort | awk '/^(TCP|UDP|SCTP|FWM)/{s=$2} /->/ && $2 != "RemoteAddress:Port" {print s, $2, $3, $4}'; }
link_addrs() { ip -o addr show dev "${1:-balanced0}" 2>/dev/null | awk '{print $4}' | sort; }

# reset_node: a clean slate between scenarios (flush IPVS, remove the VIP link, state dir).
reset_node() {
  bal_run_stop
  ipvsadm -C
  ip link del balanced0 2>/dev/null
  rm -rf "$BAL_STATE" "$BAL_STATE.run.log"
  mkdir -p "$BAL_STATE"
}
