#!/usr/bin/env bash
# gen-bench.sh OUT_DIR NSVC NDEST — the benchmark's inputs, identical for every tool:
#   manifests/svc-NNNNN.yaml  one Balancer per VIP (as the exporter writes them): TCP 80, rr,
#                             direct routing, NDEST backends of weight 1
#   keepalived.conf           the same services as keepalived virtual_server blocks (no checkers)
#   node.yaml                 owns 198.18.0.0/15 on 16 VIP links; resync every hour (the bench
#                             triggers its own)
#   node-1link.yaml           the same on one VIP link
#   bench.env                 NSVC, NDEST, LAST_VIP, LAST_FILE
# VIP i = 198.18.0.0 + 1 + i; backend j of VIP i = 10.(i / 256).(i % 256).(j + 1), port 80.
# Addresses are used inside the QEMU guest only (it has no network card).
set -euo pipefail
out=$1 nsvc=$2 ndest=$3
rm -rf "$out"; mkdir -p "$out/manifests"
awk -v out="$out" -v n="$nsvc" -v d="$ndest" '
function vip(i,   a) { a = 1 + i; return "198." (18 + int(a / 65536)) "." int(a / 256) % 256 "." a % 256 }
BEGIN {
  ka = out "/keepalived.conf"
  print "global_defs {\n    router_id balanced-bench\n}\n" > ka
  for (i = 0; i < n; i++) {
    f = sprintf("%s/manifests/svc-%05d.yaml", out, i)
    printf "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: svc-%05d\n  source: manual\nspec:\n  vip: %s\n  services:\n  - protocol: TCP\n    port: 80\n    scheduler: rr\n    forwarding:\n      method: direct\n    backends:\n", i, vip(i) > f
    printf "virtual_server %s 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n", vip(i) > ka
    for (j = 0; j < d; j++) {
      rip = "10." int(i / 256) "." i % 256 "." j + 1
      printf "    - address: %s\n", rip > f
      printf "    real_server %s 80 {\n        weight 1\n    }\n", rip > ka
    }
    print "}" > ka
    close(f)
  }
  printf "NSVC=%d\nNDEST=%d\nLAST_VIP=%s\nLAST_FILE=svc-%05d.yaml\n", n, d, vip(n - 1), n - 1 > (out "/bench.env")
}'
cat > "$out/node.yaml" <<'YAML'
apiVersion: balanced.io/v1
kind: NodeConfig
metadata:
  name: bench
spec:
  interface: balanced0
  vipLinks: 16
  vipRanges: ["198.18.0.0/15"]
  resyncInterval: 1h
  withdrawDelay: 0s
  maxDeletions:
    services: "100%"
    destinations: "100%"
YAML
grep -v '^  vipLinks:' "$out/node.yaml" > "$out/node-1link.yaml"
