#!/usr/bin/env bash
# Host-route scale benchmark (issue 13 §4): ci/bench/host-routes-10k.yaml (100 x 100 = 10,000 VMs,
# --qps 200) against a lab brought up in its own process with the host-route controller
# (`lab up --host-routes`), so the harness's figures are its own. Prints the figures for
# docs/PERFORMANCE.md: harness wall, CPU and peak RSS (GNU time); controller peak RSS (VmHWM of
# its recorded PID, before the lab goes) and reconcile p99 (its /metrics, from the run's
# hostRouteControllerMeasurement); BMP messages decoded (total, busiest second); time from the last
# VMI Running to the last /32 routed to its node in ext's FIB; /32s observed and missing.
# Needs root and FRR. ITERATIONS / VM_COUNT / QPS override the profile (e.g. a 10 x 100 trial);
# EXTRA_ARGS adds run flags (e.g. "--probe-vms false" to see what probing costs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-100}
VM_COUNT=${VM_COUNT:-100}
QPS=${QPS:-200}
BIN=${BIN:-target/release/vmbgp-bench}
STATE=$(mktemp -d /tmp/vmbgp-bench-hr.XXXXXX)
chmod 755 "$STATE"   # the frr user must reach the lab's state directory
RESULTS=$(mktemp -d /tmp/vmbgp-bench-hr-results.XXXXXX)
TIMING=$(mktemp /tmp/vmbgp-bench-hr-time.XXXXXX)
LOG=$(mktemp /tmp/vmbgp-bench-hr-log.XXXXXX)
cleanup() {
  "$BIN" lab down --state-dir "$STATE/lab" >/dev/null 2>&1 || true
  rm -rf "$STATE" "$RESULTS" "$TIMING" "$LOG"
}
trap cleanup EXIT
"$BIN" lab up --state-dir "$STATE/lab" --lab-id hrbench --nodes 3 --host-routes >/dev/null
read -r controller_pid metrics vty kubeconfig netns < <(python3 -c '
import json, os, sys
lab = json.load(open(sys.argv[1]))
c, ext = lab["hostRouteController"], lab["externalRouter"]
print(c["pid"], c["metrics"], os.path.dirname(ext["bgpdVty"]), lab["kubeconfig"], ext["netns"])
' "$STATE/lab/lab.json")
rc=0
/usr/bin/time -f '%e %U %S %M' -o "$TIMING" \
  "$BIN" run --kubeconfig "$kubeconfig" --netns "$netns" \
  --profile ci/bench/host-routes-10k.yaml --iterations "$ITERATIONS" --vm-count "$VM_COUNT" \
  --qps "$QPS" --burst "$QPS" --controller-metrics "$metrics" --frr-vty-dir "$vty" ${EXTRA_ARGS:-} \
  --uuid hrbench --results-dir "$RESULTS" --log-level info >"$LOG" 2>&1 || rc=$?
controller_hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$controller_pid/status")
# GNU time writes "Command exited with non-zero status N" first when the run fails.
read -r wall user sys rss_kb < <(tail -1 "$TIMING")
cpu=$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN { printf "%.2f", (u + s) / w }')
bmp=$(grep -o 'BMP: [0-9]* messages decoded, at most [0-9]* in one second' "$LOG" | tail -1 || true)
if [ "$rc" -ne 0 ]; then tail -30 "$LOG"; fi
python3 - "$RESULTS/hrbench" <<'PY' || true
import datetime, glob, json, sys
def docs(prefix):
    out = []
    for f in glob.glob(f"{sys.argv[1]}/{prefix}-*.json"):
        out.extend(json.load(open(f)))
    return out
def t(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
routes = [d for d in docs("routeConvergenceMeasurement") if d.get("scope") == "hostRoute"]
routed = [d for d in routes if "advertiseAllNextHopsLatency" in d]
missing = len(routes) - len(routed)
if not routed:
    sys.exit(f"host routes: {len(routes)} /32 documents, none routed to its node")
last_running = max(t(d["timestamp"]) for d in routes)
last_routed = max(t(d["timestamp"]) + datetime.timedelta(milliseconds=d["advertiseAllNextHopsLatency"]) for d in routed)
controller = [d for d in docs("hostRouteControllerMeasurement") if d["scope"] == "controller"]
p99 = controller[0].get("reconcileP99", "missing") if controller else "missing"
print(f"host routes: {len(routes)} /32 documents, {len(routed)} routed to their node, {missing} missing")
print(f"last VMI Running -> last /32 routed to its node: {(last_routed - last_running).total_seconds() * 1000:.0f} ms")
print(f"controller reconcile p99: {p99} ms")
PY
echo "controller peak RSS: $((controller_hwm_kb / 1024)) MB"
echo "${bmp:-BMP: not reported}"
echo "| ${ITERATIONS} x ${VM_COUNT} VMs, host routes, 3 nodes, qps ${QPS} | ${wall} s | ${cpu} cores (user ${user} s, sys ${sys} s) | $((rss_kb / 1024)) MB | exit ${rc} |"
