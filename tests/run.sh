#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# This is the README's test command and what .ci/run executes on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the end-to-end tests start on loopback (they never skip in CI).
# baresip-core: the softphones of tests/phones; redis-server: the shared location store.
# iproute2: `ip link set lo up` inside the private network namespaces of the flood tests.
DEBS=(sip-tester postgresql freeradius baresip-core redis-server prometheus iproute2 stunnel4)
missing=()
for p in "${DEBS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
    # Debian starts these services on install; the tests start their own private instances.
    $SUDO systemctl disable --now freeradius postgresql redis-server >/dev/null 2>&1 || true
    $SUDO service freeradius stop >/dev/null 2>&1 || true
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade pip >/dev/null 2>&1 || true
$PY -m pip install -q ".[test,fuzz]"  # fuzz: atheris, for the bounded fuzz run at the end

# The compiled backend must have been built: the suite fails otherwise (tests/fastsip/test_backend.py).
$PY -m pytest "$@"
# The fallback: the whole parser suite again with the compiled backend switched off.
FASTSIP_NO_EXTENSIONS=1 $PY -m pytest -q -p no:cacheprovider tests/fastsip
# A bounded fuzz run (atheris/libFuzzer, tests/fuzz): every corpus message, then what libFuzzer
# makes of them, through both backends for FUZZ_SECONDS (default 25). An exception other than
# ParseError, or the backends disagreeing, stops it with a non-zero status, which fails this
# script; the input is saved as fuzz-artifacts/crash-* (make it a corpus/invalid case).
PYTHON=$PY tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-25}"
