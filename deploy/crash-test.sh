#!/usr/bin/env bash
# crash-test.sh - nothing lost, nothing doubled: the agent and the aggregator
# killed with -9 at random moments while device logs grow and rotate.
#
#   deploy/crash-test.sh [crash [SECONDS]]   (default 45 s)
#       Three device folders under LOGS: devR rotated by rename
#       (OMADM.log -> OMADM.N.log), devC by copytruncate, devT truncated in
#       place (only once the aggregator holds everything written to it: lines
#       cut away before anyone read them are lost by any tailer).  The agent
#       runs exactly as
#         scepwatch-agent run --aggregator URL --state-dir DIR \
#             --format android_omadm 'LOGS/{device}/OMADM*.log'
#       Every line carries a unique marker in its profile GUID; at the end
#       every marker must be stored exactly once (scepwatch events).
#
#   deploy/crash-test.sh outage [SECONDS]    (default 240 s)
#       The aggregator is down for SECONDS while lines are written steadily
#       (RATE lines/s per device, default 25, two devices); prints the agent's
#       VmRSS and the spool size as it fills to its bound (SPOOL, default
#       256K) and reading pauses, then starts the aggregator and checks that
#       every event arrives once.
#
#   deploy/crash-test.sh files [N]           (default 1000)
#       Tails N files (one per device folder) under steady writes; prints
#       VmRSS.
#
# Environment: BIN (directory of the three programs; default build/bin next
# to this script's parent), KEEP=1 keeps the work directory, SEED for $RANDOM.
set -u

mode=${1:-crash}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$here/build/bin}
AGENT=$BIN/scepwatch-agent
AGG=$BIN/scepwatch-aggregator
CLI=$BIN/scepwatch
for b in "$AGENT" "$AGG" "$CLI"; do
    [ -x "$b" ] || { echo "crash-test: $b not found (set BIN)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "crash-test: needs jq" >&2; exit 2; }

W=$(mktemp -d /tmp/sw-crash-XXXXXX)
LOGS=$W/logs
STATE=$W/state
URL=ipc://$W/agg.sock
DB=$W/agg.db
RANDOM=${SEED:-$$}
agent_pid=
agg_pid=

cleanup() {
    [ -n "$agent_pid" ] && kill -9 "$agent_pid" 2>/dev/null
    [ -n "$agg_pid" ] && kill -9 "$agg_pid" 2>/dev/null
    wait 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# lines DEV FROM TO >> FILE: android_omadm SCEP state changes, marker in the GUID
lines() {
    awk -v dev="$1" -v from="$2" -v to="$3" 'BEGIN {
        for (n = from; n < to; n++)
            printf "2018-02-27T05:%02d:%02d.%07d    INFO    Event     com.microsoft.omadm.platforms.android.certmgr.state.NativeScepCertInstallStateMachine    18327        0    SCEP cert '\''ModelName=AC_51%%2FLogicalName_%08x_0000_0000_0000_%012x;Hash=1'\'' state changed from CERT_INSTALL_REQUESTED to CERT_INSTALLING\n", int(n / 60) % 60, n % 60, n % 10000000, dev, n
    }'
}

start_agg() {
    "$AGG" --db "$DB" --listen "$URL" >>"$W/agg.log" 2>&1 &
    agg_pid=$!
    for _ in $(seq 100); do
        grep -q "ready on" "$W/agg.log" 2>/dev/null && [ -S "$W/agg.sock" ] && return 0
        sleep 0.1
    done
    echo "crash-test: aggregator did not start" >&2
    return 1
}

start_agent() {   # the command shape the issue fixes
    "$AGENT" run --aggregator "$URL" --state-dir "$STATE" --format android_omadm \
        "$LOGS/{device}/OMADM*.log" "$@" >>"$W/agent.log" 2>&1 &
    agent_pid=$!
}

kill9() {   # kill9 VAR: SIGKILL the pid held in VAR, by pid
    local pid=${!1}
    [ -n "$pid" ] || return 0
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    printf -v "$1" '%s' ''
}

# stored [DEVICE]: number of events the aggregator holds
stored() {
    if [ -n "${1:-}" ]; then
        "$CLI" --aggregator "$URL" events --device "$1" --format jsonl 2>/dev/null | wc -l
    else
        "$CLI" --aggregator "$URL" events --format jsonl 2>/dev/null | wc -l
    fi
}

# held: number of events the aggregator holds (cheap: Health), -1 if down
held() {
    "$CLI" --aggregator "$URL" health 2>/dev/null | sed -n 's/.* holds \([0-9]*\) events.*/\1/p' |
        grep . || echo -1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# cpu_s PID: user+system CPU seconds used so far
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null
}

spool_bytes() {
    if command -v sqlite3 >/dev/null && [ -f "$STATE/state.db" ]; then
        sqlite3 -readonly "$STATE/state.db" \
            "PRAGMA busy_timeout=2000; SELECT COALESCE(SUM(length(data)),0) FROM spool" 2>/dev/null |
            tail -1
    else
        echo "?"
    fi
}

# verify DEV=COUNT...: every marker 0..COUNT-1 of each device stored once
verify() {
    "$CLI" --aggregator "$URL" events --format jsonl >"$W/events.jsonl" || return 1
    jq -r '.profile // "none"' "$W/events.jsonl" | sort | uniq -c >"$W/markers.txt"
    local -A want
    local total=0 dup=0 ok=0 other=0 stored_n c prof a e n spec
    for spec in "$@"; do
        want[$(printf '%08x' "${spec%%=*}")]=${spec#*=}
        total=$((total + ${spec#*=}))
    done
    stored_n=$(wc -l <"$W/events.jsonl")
    while read -r c prof; do
        IFS=- read -r a _ _ _ e <<<"$prof"
        if [ -n "${want[$a]:-}" ] && [ -n "${e:-}" ] && [ $((16#$e)) -lt "${want[$a]}" ]; then
            ok=$((ok + 1))
        else
            other=$((other + c))
        fi
        [ "$c" -gt 1 ] && dup=$((dup + c - 1))
    done <"$W/markers.txt"
    echo "lines written: $total; events stored: $stored_n; duplicates: $dup;" \
        "lost: $((total - ok)); unexpected: $other"
    [ "$dup" -eq 0 ] && [ "$ok" -eq "$total" ] && [ "$stored_n" -eq "$total" ] && [ "$other" -eq 0 ]
}

mkdir -p "$LOGS"

case $mode in
crash)
    secs=${2:-45}
    declare -a name=(devR devC devT) written=(0 0 0) rot=(0 0 0)
    for d in 0 1 2; do mkdir -p "$LOGS/${name[d]}"; done
    start_agg || exit 1
    start_agent
    t0=$(now_ms)
    end=$((t0 + secs * 1000))
    next_kill=$((t0 + 1000 + RANDOM % 3000))
    next_rot=($((t0 + 500 + RANDOM % 2000)) $((t0 + 500 + RANDOM % 2000)) $((t0 + 2000)))
    quiet_until=0
    kills_agent=0 kills_agg=0
    agent_back=0 agg_back=0
    echo "crash test: $secs s in $W (seed ${SEED:-$$})"
    while [ "$(now_ms)" -lt "$end" ]; do
        now=$(now_ms)
        for d in 0 1 2; do
            if [ "$d" -eq 2 ] && [ "$quiet_until" -ne 0 ]; then continue; fi
            k=$((1 + RANDOM % 6))
            lines "$d" "${written[d]}" $((written[d] + k)) >>"$LOGS/${name[d]}/OMADM.log"
            written[d]=$((written[d] + k))
        done
        for d in 0 1; do
            if [ "$now" -ge "${next_rot[d]}" ]; then
                rot[d]=$((rot[d] + 1))
                f=$LOGS/${name[d]}/OMADM.log
                if [ "$d" -eq 0 ]; then
                    mv "$f" "$LOGS/${name[d]}/OMADM.${rot[d]}.log"
                else
                    cp "$f" "$LOGS/${name[d]}/OMADM.${rot[d]}.log" && : >"$f"
                fi
                next_rot[d]=$((now + 500 + RANDOM % 2500))
            fi
        done
        # in place: devT pauses (up to 4 s) until the aggregator holds all of it
        if [ "$quiet_until" -eq 0 ] && [ "$now" -ge "${next_rot[2]}" ]; then
            quiet_until=$((now + 4000))
        fi
        if [ "$quiet_until" -ne 0 ]; then
            if [ -n "$agg_pid" ] && [ "$(stored devT)" -eq "${written[2]}" ]; then
                : >"$LOGS/devT/OMADM.log"
                rot[2]=$((rot[2] + 1))
                quiet_until=0
            elif [ "$now" -ge "$quiet_until" ]; then
                quiet_until=0
            fi
            [ "$quiet_until" -eq 0 ] && next_rot[2]=$((now + 1000 + RANDOM % 3000))
        fi
        if [ "$now" -ge "$next_kill" ]; then
            what=$((RANDOM % 3))
            if [ "$what" -ne 1 ] && [ -n "$agent_pid" ]; then
                kill9 agent_pid; kills_agent=$((kills_agent + 1)); agent_back=$((now + RANDOM % 1500))
            fi
            if [ "$what" -ne 0 ] && [ -n "$agg_pid" ]; then
                kill9 agg_pid; kills_agg=$((kills_agg + 1)); agg_back=$((now + RANDOM % 2500))
            fi
            next_kill=$((now + 1000 + RANDOM % 3000))
        fi
        [ -z "$agent_pid" ] && [ "$(now_ms)" -ge "$agent_back" ] && start_agent
        [ -z "$agg_pid" ] && [ "$(now_ms)" -ge "$agg_back" ] && { start_agg || exit 1; }
        sleep 0.0$((2 + RANDOM % 6))
    done
    [ -z "$agent_pid" ] && start_agent
    [ -z "$agg_pid" ] && { start_agg || exit 1; }
    total=$((written[0] + written[1] + written[2]))
    echo "writing stopped: rename ${written[0]} lines (${rot[0]} rotations)," \
        "copytruncate ${written[1]} (${rot[1]}), in place ${written[2]} (${rot[2]});" \
        "agent killed $kills_agent times, aggregator $kills_agg times"
    for _ in $(seq 600); do
        [ "$(held)" -ge "$total" ] && break
        sleep 0.5
    done
    verify 0="${written[0]}" 1="${written[1]}" 2="${written[2]}"
    rc=$?
    kill -TERM "$agent_pid"; wait "$agent_pid"; arc=$?; agent_pid=
    echo "agent stopped on SIGTERM with status $arc"
    kill -TERM "$agg_pid"; wait "$agg_pid"; agg_pid=
    [ $rc -eq 0 ] && [ $arc -eq 0 ] && echo "PASS" || { echo "FAIL"; tail -30 "$W/agent.log"; exit 1; }
    ;;
outage)
    secs=${2:-240}
    spool=${SPOOL:-256K}
    per=$(( ${RATE:-25} / 2 ))
    mkdir -p "$LOGS/dev0" "$LOGS/dev1"
    start_agent --spool-max-bytes "$spool"
    n0=0 n1=0
    t0=$(now_ms)
    end=$((t0 + secs * 1000))
    next_report=$t0
    max_rss=0
    echo "outage: aggregator down for $secs s, spool bound $spool, steady writes; agent pid $agent_pid"
    while [ "$(now_ms)" -lt "$end" ]; do
        lines 0 $n0 $((n0 + per)) >>"$LOGS/dev0/OMADM.log"; n0=$((n0 + per))
        lines 1 $n1 $((n1 + per)) >>"$LOGS/dev1/OMADM.log"; n1=$((n1 + per))
        r=$(rss_kb "$agent_pid"); [ -n "$r" ] && [ "$r" -gt "$max_rss" ] && max_rss=$r
        if [ "$(now_ms)" -ge "$next_report" ]; then
            echo "  t=$(( ($(now_ms) - t0) / 1000 ))s lines=$((n0 + n1)) spool=$(spool_bytes) bytes VmRSS=${r} KiB"
            next_report=$(( $(now_ms) + 15000 ))
        fi
        sleep 0.5
    done
    echo "outage over: $((n0 + n1)) lines written; spool $(spool_bytes) bytes; agent VmRSS max $max_rss KiB"
    start_agg || exit 1
    t1=$(now_ms)
    for _ in $(seq 2400); do
        [ "$(held)" -ge $((n0 + n1)) ] && break
        sleep 0.5
    done
    echo "caught up in $(( ($(now_ms) - t1) / 1000 )) s"
    verify 0=$n0 1=$n1 && echo PASS || { echo FAIL; exit 1; }
    kill -TERM "$agent_pid"; wait "$agent_pid"; agent_pid=
    kill -TERM "$agg_pid"; wait "$agg_pid"; agg_pid=
    ;;
files)
    n=${2:-1000}
    for i in $(seq 0 $((n - 1))); do mkdir -p "$LOGS/d$i"; done
    start_agg || exit 1
    start_agent
    declare -a cnt
    for i in $(seq 0 $((n - 1))); do cnt[i]=0; done
    t0=$(now_ms)
    max_rss=0
    echo "files: $n files, one per device folder, appended round-robin for 60 s"
    while [ $(( $(now_ms) - t0 )) -lt 60000 ]; do
        # one line to each of 100 files per round, via one awk
        base=$((RANDOM % n))
        awk -v n="$n" -v base="$base" -v logs="$LOGS" -v ts="$(now_ms)" 'BEGIN {
            for (k = 0; k < 100; k++) {
                i = (base + k) % n
                f = logs "/d" i "/OMADM.log"
                printf "2018-02-27T05:18:44.9820000    INFO    Event     com.microsoft.omadm.client.OMADMClient    1    1    chatter %d\n", ts >> f
                close(f)
            }
        }'
        r=$(rss_kb "$agent_pid"); [ -n "$r" ] && [ "$r" -gt "$max_rss" ] && max_rss=$r
        sleep 0.05
    done
    echo "tailing $n files under steady writes: agent VmRSS now $(rss_kb "$agent_pid") KiB," \
        "max $max_rss KiB; CPU $(cpu_s "$agent_pid") s in $(( ($(now_ms) - t0) / 1000 )) s"
    ;;
*)
    echo "usage: $0 [crash [SECONDS] | outage [SECONDS] | files [N]]" >&2
    exit 2
    ;;
esac
