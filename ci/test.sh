#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# Installs what a fresh machine lacks, then checks formatting, lints and runs the whole test suite.
# Exits non-zero on any failure. Lab tests need root (network namespaces, FRR).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "ci/test.sh installs packages and runs the lab tests that need root: run it as root (e.g. sudo bash ci/test.sh)." >&2
  echo "As another user, 'cargo test --workspace' runs every test that needs no root and lists the others as ignored." >&2
  exit 4
fi

section "prerequisites"
missing=()
[ -x /usr/lib/frr/bgpd ] && command -v vtysh >/dev/null || missing+=(frr)
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The official Kubernetes Python client, for the lab API server's client conformance tests: always the
# newest release PyPI serves today, so a client release that breaks the lab fails a test, named.
python3 -m pip install --quiet --disable-pip-version-check --upgrade kubernetes
echo "frr: $(dpkg-query -W -f='${Version}' frr 2>/dev/null || echo '?'), python kubernetes: $(python3 -c 'import kubernetes; print(kubernetes.__version__)')"

section "cargo fmt --check"
cargo fmt --all --check

# After the format check: the count relies on rustfmt's closing braces.
section "source files: at most 1,000 non-test lines each"
python3 ci/non-test-lines.py

section "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Every test binary runs even when one fails (--no-fail-fast), and the tests that need root, FRR and
# network namespaces, ignored in a plain `cargo test`, run here too (--include-ignored).
section "cargo test"
cargo test --workspace --locked --no-fail-fast -- --include-ignored
