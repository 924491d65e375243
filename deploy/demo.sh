#!/usr/bin/env bash
# The main job on the embedded default: builds scepwatch, starts the
# aggregator on a fresh SQLite file, ships the bundled sample logs with the
# agent (device logs with a device name, server logs without), prints the
# report, and stops the aggregator.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS" --target scepwatch-agent scepwatch-aggregator scepwatch >/dev/null
BIN=build/bin
S=tests/data/samples
WORK=$(mktemp -d /tmp/scepwatch-demo.XXXXXX)
URL=${SCEPWATCH_DEMO_URL:-ipc://$WORK/aggregator.sock}
export SCEPWATCH_AGGREGATOR=$URL

"$BIN"/scepwatch-aggregator --db "$WORK/scepwatch.db" --listen "$URL" >"$WORK/aggregator.log" 2>&1 &
AGG=$!
trap 'kill $AGG 2>/dev/null; wait $AGG 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "ready on" "$WORK/aggregator.log" && break; sleep 0.1; done
cat "$WORK/aggregator.log"

send() { "$BIN"/scepwatch-agent send "$@"; }
# device logs: the device's name is not in them, so the admin gives it
send --format android_omadm --device android-jdoe-pixel "$S"/android_omadm/OMADM.log
send --format android_omadm --device android-asmith-galaxy "$S"/android_omadm/OMADM-scenarios.log
send --format ios_console --date 2024-03-14 --device iphone-jdoe "$S"/ios_console/console-pending.txt "$S"/ios_console/console-success.rtf
send --format ios_console --date 2024-03-14 --device iphone-bwong "$S"/ios_console/console-failure.txt
# Windows device events name their computer; server logs belong to no device
send --format auto "$S"/windows_event_xml/*.xml "$S"/ca_certutil_csv/*.csv "$S"/ndes_iis/*.log

echo
"$BIN"/scepwatch summary --as-of 2024-03-15T12:00:00Z
echo
"$BIN"/scepwatch stuck --as-of 2024-03-15T12:00:00Z
echo
echo "database: $WORK/scepwatch.db   (try: $BIN/scepwatch --aggregator $URL events)"
