# shellcheck shell=sh
# /vm/lib.sh — helpers every guest script sources: result lines, waiting, the out channel to the
# host, and the `balanced` command line in one place.
#
# Result lines are the lane's contract with tests/vm/run: `PASS: <name>` or `FAIL: <name>`
# followed by indented `expected:` / `seen:` lines. Nothing else may start with PASS:/FAIL:.

# Debian's busybox ash runs its own applets before $PATH; its `ip` has no netns support.
ip() { /usr/sbin/ip "$@"; }

# plain log lines (tracing's colours only get in the way in failure reports)
export NO_COLOR=1
stamp() { echo "T+$(cut -d' ' -f1 /proc/uptime)s $*"; }
pass() { echo "PASS: $1"; }
# fail NAME EXPECTED SEEN
fail() {
  echo "FAIL: $1"
  printf '%s\n' "$2" | sed 's/^/    expected: /'
  printf '%s\n' "$3" | sed 's/\x1b\[[0-9;]*m//g; s/^/    seen:     /'
}
# check NAME CMD...: PASS when CMD succeeds.
check() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "command succeeds: $*" "exit status $?"; fi; }
# check_eq NAME EXPECTED SEEN
not() { ! "$@"; }
check_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi; }

# emit_file NAME PATH: send a text file to the host (lands in $VM_DIR/out/NAME).
emit_file() {
  { echo "@@FILE $1"; cat "$2"; [ -n "$(tail -c1 "$2")" ] && echo; echo "@@END"; } > /dev/ttyS1
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

# The kernel's view, normalised: ipvsadm -Sn with its services sorted (ipvsadm prints them in
# hash-table order; it sorts the destinations itself), the VIP link's global addresses.
ipvs_save() {
  ipvsadm -Sn | awk '/^-A/ {k = $0} {print k "\t" $0}' | sort -s -t "$(printf '\t')" -k1,1 | cut -f2
}
# Destinations in the kernel's list order (what mh builds its table from).
ipvs_order() { ipvsadm -Ln --nosort | awk '/^(TCP|UDP|SCTP|FWM)/{s=$2} /->/ && $2 != "RemoteAddress:Port" {print s, $2, $3, $4}'; }
has_addr() { link_addrs | grep -qx "$1"; }
link_addrs() { ip -o addr show dev "${1:-balanced0}" scope global 2>/dev/null | awk '{print $4}' | sort; }

# reset_node: a clean slate between scenarios (flush IPVS, remove the VIP link, state dir).
reset_node() {
  bal_run_stop
  ipvsadm -C
  ip link del balanced0 2>/dev/null
  for l in $(ip -o link show | awk -F': ' '$2 ~ /^balanced0-/ {print $2}'); do ip link del "$l"; done
  rm -rf "$BAL_STATE" "$BAL_STATE.run.log"
  mkdir -p "$BAL_STATE"
}

# traced OPS_FILE CMD...: run CMD (`bal ...` too) under strace; OPS_FILE gets the node-changing
# requests it made (see /vm/netlink-ops.awk), in order. Returns CMD's status.
traced() {
  ops=$1; shift
  if [ "$1" = bal ]; then
    shift; c=$1; shift
    set -- balanced "$c" --config "$BAL_CONFIG" --state-dir "$BAL_STATE" "$@"
  fi
  strace -f -s 256 -e trace=socket,sendmsg,sendto,openat -e write=all -o "$ops.strace" "$@"
  rc=$?
  awk -f /vm/netlink-ops.awk "$ops.strace" > "$ops"
  return $rc
}

# check_golden NAME FILE ACTUAL: ACTUAL must equal /vm/expected/FILE (tests/vm/guest/expected).
# With BLESS=1 the actual content is sent to the host, which rewrites the golden file.
check_golden() {
  if [ "${BLESS:-0}" = 1 ]; then
    emit_file "golden-$2" "$3"; pass "$1 (blessed $2)"; return
  fi
  if [ ! -f "/vm/expected/$2" ]; then
    fail "$1" "golden file tests/vm/guest/expected/$2 (BLESS=1 tests/vm/run writes it)" "$(cat "$3")"
  elif cmp -s "/vm/expected/$2" "$3"; then pass "$1"
  else fail "$1" "$(cat "/vm/expected/$2")" "$(cat "$3")"
  fi
}

# check_exit NAME EXPECTED_STATUS STATUS OUTPUT_FILE
check_exit() {
  if [ "$2" = "$3" ]; then pass "$1"
  else fail "$1" "exit status $2" "exit status $3; output: $(tail -15 "$4")"
  fi
}

# owned_save: the lines of `ipvsadm -Sn` inside the lane's VIP ranges, sorted (services come in
# hash order from ipvsadm; destinations are sorted by it).
owned_save() { ipvsadm -Sn | grep -e ' 198\.51\.100\.' -e ' \[2001:db8:100:' -e '^-[Aa] -f 1[0-9][0-9] ' | sort; }
# foreign_save: everything else.
foreign_save() { ipvsadm -Sn | grep -v -e ' 198\.51\.100\.' -e ' \[2001:db8:100:' -e '^-[Aa] -f 1[0-9][0-9] ' | sort; }
# same_as FILE: does owned_save equal FILE's content (sorted)?
same_as() { [ "$(owned_save)" = "$(sort "$1")" ]; }

# manifest FILE NAME VIP SERVICES_YAML: write a Balancer manifest (SERVICES_YAML is the list
# under spec.services, indented by two spaces).
manifest() {
  mkdir -p "$(dirname "$1")"
  { echo "apiVersion: balanced.io/v1"
    echo "kind: Balancer"
    echo "metadata:"
    echo "  name: $2"
    echo "  source: manual"
    echo "spec:"
    echo "  vip: \"$3\""
    echo "  services:"
    printf '%s\n' "$4"
  } > "$1.tmp" && mv "$1.tmp" "$1"
}
