#!/usr/bin/env bash
# test_fleetgen.sh - tests/fleetgen.py: same seed gives the same bytes, every generated file
# parses to exactly its expected events (also with --format auto), the truth's statuses follow
# from the events, the --scale log parses to the number of events it announces, and the
# committed fleet in tests/data/fleet-small is what the generator makes today.
#
# usage: tests/test_fleetgen.sh [PATH/TO/scepwatch-agent]   (default: build/bin/scepwatch-agent)
# Needs python3 (standard library only).  Last line: "fleetgen: N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
agent=${1:-$top/build/bin/scepwatch-agent}
py=${PYTHON:-python3}
gen="$here/fleetgen.py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleetgen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

if [ ! -x "$agent" ]; then
    echo "fleetgen: no agent at $agent" >&2
    echo "fleetgen: 0 passed, 1 failed"
    exit 1
fi

# 1. determinism: the same seed twice gives byte-identical trees; another seed does not
"$py" "$gen" --seed 42 --devices 20 --out "$tmp/a" 2>/dev/null &&
"$py" "$gen" --seed 42 --devices 20 --out "$tmp/b" 2>/dev/null &&
diff -r "$tmp/a" "$tmp/b" >/dev/null && ok "same seed, same bytes" || bad "same seed, same bytes"
"$py" "$gen" --seed 43 --devices 20 --out "$tmp/c" 2>/dev/null
diff -rq "$tmp/a" "$tmp/c" >/dev/null && bad "another seed, other bytes" || ok "another seed, other bytes"

# 2. the agent's parsers against the generated fleet (exact events, --format auto, statuses)
if "$py" "$gen" --check "$tmp/a" --agent "$agent" --auto --strict >"$tmp/check.txt" 2>&1; then
    ok "check: 20-device fleet"
else
    bad "check: 20-device fleet"; cat "$tmp/check.txt"
fi

# 3. the Binary Certificate column: the CA parser recomputes the Android txn from it
"$py" "$gen" --seed 7 --devices 9 --binary-cert --out "$tmp/bc" 2>/dev/null
if "$py" "$gen" --check "$tmp/bc" --agent "$agent" --strict >"$tmp/check-bc.txt" 2>&1; then
    ok "check: --binary-cert fleet"
else
    bad "check: --binary-cert fleet"; cat "$tmp/check-bc.txt"
fi

# 4. scale mode: the parser finds as many events as the generator announces
msg=$("$py" "$gen" --seed 1 --omadm-lines 20000 --scep-ratio 0.2 --out "$tmp/big.log" 2>&1)
want=$(printf '%s\n' "$msg" | sed -n 's/.* \([0-9][0-9]*\) expected events.*/\1/p')
got=$("$agent" parse --format android_omadm "$tmp/big.log" | wc -l | tr -d ' ')
if [ -n "$want" ] && [ "$want" = "$got" ]; then
    ok "scale: $got events"
else
    bad "scale: expected '$want' events, parsed $got"
fi

# 5. the committed small fleet is what the generator makes with its recorded arguments
small="$here/data/fleet-small"
if [ -f "$small/manifest.json" ]; then
    "$py" "$gen" --like "$small" --out "$tmp/small" 2>/dev/null
    if diff -r "$small" "$tmp/small" >"$tmp/small.diff" 2>&1; then
        ok "fleet-small is up to date"
    else
        bad "fleet-small differs from the generator (regenerate: python3 tests/fleetgen.py --like tests/data/fleet-small --out tests/data/fleet-small)"
        head -20 "$tmp/small.diff"
    fi
    if "$py" "$gen" --check "$small" --agent "$agent" --strict >"$tmp/check-small.txt" 2>&1; then
        ok "check: fleet-small"
    else
        bad "check: fleet-small"; cat "$tmp/check-small.txt"
    fi
fi

echo "fleetgen: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
