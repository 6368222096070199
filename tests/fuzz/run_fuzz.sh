#!/usr/bin/env bash
# Run the atheris fuzzer for SECONDS (default 600) on a copy of the corpus.
# With FUZZ_NATIVE=1 the compiled backend is rebuilt with clang and
# -fsanitize=fuzzer-no-link,address so libFuzzer also sees its C branches and
# ASan checks every byte access (boundscheck is off in the .pyx).
# Crashing inputs land in fuzz-artifacts/; turn each into a corpus/invalid case.
# A crash ends the run with a non-zero status (tests/run.sh runs it for 25 s in CI).
# PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-600}
PY=${PYTHON:-python3}
mkdir -p fuzz-artifacts/work
PRELOAD=""
if [ "${FUZZ_NATIVE:-0}" = "1" ]; then
    rm -rf fuzz-artifacts/native && mkdir -p fuzz-artifacts/native
    CC=clang-14 LDSHARED="clang-14 -shared" FASTSIP_CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address" \
        $PY setup.py -q build_ext --build-lib fuzz-artifacts/native --build-temp fuzz-artifacts/native-tmp
    export PYTHONPATH="$PWD/fuzz-artifacts/native-overlay"
    rm -rf fuzz-artifacts/native-overlay && mkdir -p fuzz-artifacts/native-overlay
    cp -r src/fastsip fuzz-artifacts/native-overlay/
    rm -f fuzz-artifacts/native-overlay/fastsip/_parser_c*.so
    cp fuzz-artifacts/native/fastsip/_parser_c*.so fuzz-artifacts/native-overlay/fastsip/
    PRELOAD="$($PY -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')"
    export ASAN_OPTIONS=detect_leaks=0,allocator_may_return_null=1
fi
LD_PRELOAD="$PRELOAD" $PY tests/fuzz/fuzz_parser.py -max_total_time="$SECONDS_TO_RUN" ${FUZZ_EXTRA:-} -max_len=4096 \
    -artifact_prefix=fuzz-artifacts/ -print_final_stats=1 fuzz-artifacts/work corpus/valid corpus/invalid
