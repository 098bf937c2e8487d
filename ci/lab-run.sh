#!/usr/bin/env bash
# The README quickstart: the main job on the embedded lab.
# Installs FRR and iproute2 when missing (Debian), builds vmbgp-bench, and runs
#   vmbgp-bench run --lab --iterations ${ITERATIONS:-3} --vm-count ${VM_COUNT:-5} [extra flags...]
# Needs root (network namespaces, FRR daemons). Extra arguments are passed to `run`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "the lab needs root (network namespaces, FRR daemons): run it as root, e.g. sudo $0" >&2
  exit 4
fi
missing=()
[ -x /usr/lib/frr/bgpd ] || missing+=(frr)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked -p vmbgp-bench
exec target/release/vmbgp-bench run --lab --iterations "${ITERATIONS:-3}" --vm-count "${VM_COUNT:-5}" "$@"
