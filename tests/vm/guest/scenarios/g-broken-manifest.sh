# (g) a broken manifest written while `balanced run` runs changes nothing in the kernel — its
# last known good version stays in force — and is reported (log and status); the other files
# still converge, and fixing the file converges again.
M=/tmp/g/manifests
svc() { printf '  - protocol: TCP\n    port: 80\n    scheduler: rr\n    forwarding:\n      method: masquerade\n    backends:\n    - address: 192.0.2.11\n      port: 80\n      weight: %s\n' "$1"; }
manifest $M/good.yaml good 198.51.100.60 "$(svc 1)"
manifest $M/other.yaml other 198.51.100.61 "$(svc 1)"
bal_run_start --dataplane kernel $M
cat > /tmp/g.want <<EOF2
-A -t 198.51.100.60:80 -s rr
-a -t 198.51.100.60:80 -r 192.0.2.11:80 -m -w 1
-A -t 198.51.100.61:80 -s rr
-a -t 198.51.100.61:80 -r 192.0.2.11:80 -m -w 1
EOF2
if wait_until 30 same_as /tmp/g.want; then pass "(g) balanced run converges two manifests"
else fail "(g) balanced run converges two manifests" "$(sort /tmp/g.want)" "$(owned_save; tail $BAL_STATE.run.log)"; fi

stamp "break good.yaml (a weight change plus an unknown field), edit other.yaml"
manifest $M/good.yaml good 198.51.100.60 "$(svc 5; echo '    bogusField: 1')"
manifest $M/other.yaml other 198.51.100.61 "$(svc 4)"
sed 's/61:80 -r 192.0.2.11:80 -m -w 1/61:80 -r 192.0.2.11:80 -m -w 4/' /tmp/g.want > /tmp/g.want2
if wait_until 15 same_as /tmp/g.want2; then pass "(g) the valid file's edit still converges"
else fail "(g) the valid file's edit still converges" "$(sort /tmp/g.want2)" "$(owned_save)"; fi
bal_resync; sleep 3
check_eq "(g) the broken file changed nothing in the kernel (after a resync)" "$(sort /tmp/g.want2)" "$(owned_save)"
check "(g) VIP 198.51.100.60 still announced" has_addr 198.51.100.60/32
if grep 'good.yaml' $BAL_STATE.run.log | grep -qi 'bogusField'; then pass "(g) the run log names the file and the bad field"
else fail "(g) the run log names the file and the bad field" "a line with good.yaml and bogusField" "$(tail -20 $BAL_STATE.run.log)"; fi
bal status > /tmp/g.status 2>&1
if grep 'good' /tmp/g.status | grep -qi stale; then pass "(g) status shows the manifest as stale"
else fail "(g) status shows the manifest as stale" "a line naming good as stale" "$(cat /tmp/g.status)"; fi

stamp "write invalid YAML"
printf 'apiVersion: balanced.io/v1\nkind: Balancer\nmetadata: {name: good\nspec: [\n' > $M/good.yaml
bal_resync; sleep 3
check_eq "(g) invalid YAML changed nothing in the kernel" "$(sort /tmp/g.want2)" "$(owned_save)"
check "(g) balanced run still running" kill -0 $BAL_RUN_PID

stamp "fix the file"
manifest $M/good.yaml good 198.51.100.60 "$(svc 5)"
sed 's/60:80 -r 192.0.2.11:80 -m -w 1/60:80 -r 192.0.2.11:80 -m -w 5/' /tmp/g.want2 > /tmp/g.want3
if wait_until 15 same_as /tmp/g.want3; then pass "(g) the fixed file converges"
else fail "(g) the fixed file converges" "$(sort /tmp/g.want3)" "$(owned_save)"; fi
bal_run_stop
