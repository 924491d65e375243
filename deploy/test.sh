#!/usr/bin/env bash
# Builds scepwatch with AddressSanitizer + UndefinedBehaviorSanitizer and runs
# every test (cmocka unit tests, the parser golden tests, the end-to-end tests
# that start the real aggregator on loopback), then a short smoke run of each
# fuzz target when clang is available.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSW_SANITIZE=ON -DSW_WERROR=ON >/dev/null
cmake --build build-test -j"$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-test && ctest --output-on-failure --no-tests=error -j"$JOBS")

if command -v clang >/dev/null && [ "${SW_SKIP_FUZZ:-0}" != 1 ]; then
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSW_FUZZ=ON -DSW_SANITIZE=ON >/dev/null
    cmake --build build-fuzz -j"$JOBS" --target fuzz_android_omadm fuzz_ios_console \
        fuzz_windows_event_xml fuzz_ca_certutil_csv fuzz_ndes_iis fuzz_wire
    for t in build-fuzz/tests/fuzz/fuzz_*; do
        name=$(basename "$t"); corpus=tests/fuzz/corpus/${name#fuzz_}
        work=$(mktemp -d); cp -r "$corpus"/. "$work"/ 2>/dev/null || true
        "$t" "$work" -max_total_time="${SW_FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -max_len=65536 \
            >"$work.log" 2>&1 || { tail -40 "$work.log"; echo "fuzz smoke: $name FAILED"; exit 1; }
        echo "fuzz smoke: $name ok ($(grep -o 'Done [0-9]* runs' "$work.log" || echo '? runs'))"
        rm -rf "$work" "$work.log"
    done
fi
