# /vm/scenarios.sh — runs the lane's scenarios (/vm/scenarios/<letter>-*.sh) one after another in
# this one guest, each in its own shell under a time limit, each from a clean node (reset_node).
# $ONLY (e.g. "a,c") picks some. A scenario prints PASS:/FAIL: lines; one that does not finish
# in time is a FAIL.
. /vm/lib.sh
. /vm/topology.sh
ipvsadm --set 60 2 5
stamp "building the topology"
topo_up || echo "FAIL: topology: the test network could not be built"
stamp "topology ready"
balanced --version || echo "FAIL: balanced runs in the guest"
for f in /vm/scenarios/*.sh; do
  letter=$(basename "$f" | cut -c1)
  case ",${ONLY:-$letter}," in *",$letter,"*) ;; *) continue;; esac
  reset_node
  stamp "=== scenario $(basename "$f" .sh)"
  timeout "${SCENARIO_TIMEOUT:-240}" sh -c ". /vm/lib.sh; . /vm/topology.sh; . $f"
  rc=$?
  if [ $rc = 124 ] || [ $rc = 143 ]; then
    fail "scenario $(basename "$f" .sh) finished in time" "done within ${SCENARIO_TIMEOUT:-240}s" "killed"
  fi
  # a scenario's daemons die with it; the next one starts clean
  pkill -f 'balanced run' 2>/dev/null
done
stamp "scenarios done"
