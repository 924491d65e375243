#!/usr/bin/env bash
# The benchmark suite: builds scepwatch optimized (build/, as the demo does)
# and runs tests/bench.py, which prints every figure beside a baseline
# measured in the same run.  Arguments go to bench.py:
#   deploy/bench.sh                    # the full suite: 100k and 1M enrollments (~8 min)
#   deploy/bench.sh --scales 100000    # a quicker one
#   deploy/bench.sh --smoke            # tiny sizes: does the suite run? (CI)
#   deploy/bench.sh --markdown FILE    # also write the table as Markdown
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS" --target scepwatch-agent scepwatch-aggregator scepwatch >/dev/null
exec python3 tests/bench.py --bin build/bin "$@"
