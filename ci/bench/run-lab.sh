#!/usr/bin/env bash
# Benchmark of the main job (issue 6): `vmbgp-bench` against the embedded lab with
# ITERATIONS x VM_COUNT (default 72 x 10). The lab runs in its own process (`lab up`), so the figures
# are the harness's alone: wall time, CPU (user+sys over wall) and peak RSS from GNU time.
# Needs root and FRR. Prints one Markdown table row for docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-72}
VM_COUNT=${VM_COUNT:-10}
BIN=${BIN:-target/release/vmbgp-bench}
STATE=$(mktemp -d /tmp/vmbgp-bench-lab.XXXXXX)
chmod 755 "$STATE"   # the frr user must reach the lab's state directory
RESULTS=$(mktemp -d /tmp/vmbgp-bench-results.XXXXXX)
TIMING=$(mktemp /tmp/vmbgp-bench-time.XXXXXX)
cleanup() {
  "$BIN" lab down --state-dir "$STATE/lab" >/dev/null 2>&1 || true
  rm -rf "$STATE" "$RESULTS" "$TIMING"
}
trap cleanup EXIT
"$BIN" lab up --state-dir "$STATE/lab" --lab-id bench --nodes 3 >/dev/null
rc=0
/usr/bin/time -f '%e %U %S %M' -o "$TIMING" \
  "$BIN" run --kubeconfig "$STATE/lab/kubeconfig" --netns vmbgp-bench-ext --frr-namespace openshift-frr-k8s \
  --iterations "$ITERATIONS" --vm-count "$VM_COUNT" --results-dir "$RESULTS" \
  --log-level warn >/dev/null || rc=$?
read -r wall user sys rss_kb < "$TIMING"
cpu=$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.2f", (u + s) / w }')
echo "| ${ITERATIONS} x ${VM_COUNT} VMs, 3 nodes | ${wall} s | ${cpu} cores (user ${user} s, sys ${sys} s) | $((rss_kb / 1024)) MB | exit ${rc} |"
