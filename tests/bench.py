#!/usr/bin/env python3
"""bench.py - scepwatch's benchmark suite: every figure beside a baseline measured on the same
machine in the same run, printed as one table (deploy/bench.sh builds and runs this).

  python3 tests/bench.py [--bin build/bin] [--scales 100000,1000000] [--smoke]
                         [--markdown FILE] [--work DIR] [--keep]

What it measures (medians of --repeat runs unless said otherwise):
  1. parse: `scepwatch-agent parse` of a 1M-line Android OMADM.log with 20% SCEP lines
     (tests/fleetgen.py scale mode), JSON Lines into a pipe, beside `grep -c 'state changed'`
     and `wc -l` on the same file (LC_ALL=C; the page cache is warm for all three), the three
     run one after the other in rounds, the ratios the medians of each round's ratio;
  2. ingest: events/s from `scepwatch-agent send` (parse, protobuf, zstd, nng, the
     aggregator's SQLite commit and ack) into a fresh aggregator, per fleet size, beside the
     sqlite3 shell importing the same events into a table with the same indexes and the
     same identity layout (device, time, content hash);
  3. answers at each fleet size (tests/fleetgen.py bench mode: N enrollments over a year-like
     span, with the CA export): how long after ingest the deferred correlation is done
     (the first answer without a "still correlating" note), then `summary`, `stuck` and
     `export --csv`, beside the sqlite3 shell
     running the equivalent query on the same database;
  4. agent RSS following --tail-files files with `scepwatch-agent run` (peak while shipping,
     and idle after), beside `tail -F` on the same files;
  5. bytes on the wire per event (zstd-compressed protobuf, as `send` reports them), beside
     the same events as JSON Lines and as raw log lines.
Standard library only.  Timings are wall clock; the machine is described in the output.
"""

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = dict(os.environ, LC_ALL="C")


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def timed(cmd, stdin=None, cwd=None, check=True):
    """Runs cmd with stdout drained into a pipe (not /dev/null: some tools skip work when they
    see /dev/null); returns (seconds, stdout bytes count, stderr text)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=ENV, cwd=cwd)
    n = 0
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        n += len(b)
    err = p.stderr.read().decode(errors="replace")
    rc = p.wait()
    dt = time.perf_counter() - t0
    if check and rc != 0:
        sys.exit("bench: %s failed (%d): %s" % (" ".join(cmd), rc, err.strip()[-500:]))
    return dt, n, err


def median_time(cmd, repeat, **kw):
    ts = [timed(cmd, **kw)[0] for _ in range(repeat)]
    return statistics.median(ts)


def paired(cmd_a, cmd_b, repeat):
    """Runs two commands one after the other, repeat rounds: (median a, median b, median of
    the rounds' a/b).  A shared machine's load drifts; a ratio is fair within a round."""
    rounds = [(timed(cmd_a)[0], timed(cmd_b)[0]) for _ in range(repeat)]
    return (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds),
            statistics.median(r[0] / r[1] for r in rounds))


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1048576)
    except OSError:
        pass
    sqlite = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout
    return "%s, %d cores, %s RAM, Linux %s, SQLite %s" % (
        model, os.cpu_count() or 0, mem, platform.release(), (sqlite.split() or ["?"])[0])


class Aggregator:
    def __init__(self, bindir, work, name):
        self.db = os.path.join(work, name + ".db")
        self.url = "ipc://" + os.path.join(work, name + ".sock")
        self.log = os.path.join(work, name + ".log")
        self.p = subprocess.Popen([os.path.join(bindir, "scepwatch-aggregator"), "--verbose",
                                   "--db", self.db, "--listen", self.url],
                                  stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if "ready" in open(self.log).read():
                break
            time.sleep(0.1)
        else:
            sys.exit("bench: aggregator did not start: " + open(self.log).read())

    def stop(self):
        self.p.terminate()
        self.p.wait()


def rss_kib(pid):
    """(VmRSS, VmHWM) in KiB, or (0, 0) once the process is gone."""
    rss = hwm = 0
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def sent_line(err):
    """The numbers of `send`'s summary line."""
    for line in err.splitlines():
        if " events in " in line and "bytes on the wire" in line:
            w = line.split()
            events = int(w[w.index("sent") + 1])
            wire = int(w[w.index("bytes") - 1])
            ratio = float(line.rsplit("per event, ", 1)[1].split("x")[0])
            return events, wire, ratio
    sys.exit("bench: no summary line from send: " + err[-500:])


# ---------------------------------------------------------------- 1. parse

def bench_parse(a, rows):
    path = os.path.join(a.work, "omadm-1m.log")
    subprocess.run([sys.executable, os.path.join(HERE, "fleetgen.py"), "--seed", "1",
                    "--omadm-lines", str(a.omadm_lines), "--scep-ratio", "0.2", "--out", path],
                   check=True, stderr=subprocess.DEVNULL)
    size = os.path.getsize(path)
    agent = os.path.join(a.bin, "scepwatch-agent")
    # the file just written is still being written back: not during the rounds
    os.sync()
    timed(["cat", path])                                    # warm the page cache
    # rounds of the three side by side: a shared machine's load drifts, and a
    # ratio is only fair between runs made at the same moment
    rounds = [(timed(["wc", "-l", path])[0], timed(["grep", "-c", "state changed", path])[0],
               timed([agent, "parse", "--format", "android_omadm", "--device", "bench", path])[0])
              for _ in range(max(a.repeat, 3) * 3)]
    t_wc = statistics.median(r[0] for r in rounds)
    t_grep = statistics.median(r[1] for r in rounds)
    t_parse = statistics.median(r[2] for r in rounds)
    mb = size / 1e6
    rows.append(("parse: %d-line OMADM.log (%.0f MB, 20%% SCEP), MB/s on one core"
                 % (a.omadm_lines, mb), "%.0f MB/s" % (mb / t_parse),
                 "grep -c %.0f MB/s" % (mb / t_grep),
                 "%.2fx grep's time" % statistics.median(r[2] / r[1] for r in rounds),
                 ">= 1000 MB/s, <= 2x grep"))
    rows.append(("parse: lines/s", "%.2fM lines/s" % (a.omadm_lines / t_parse / 1e6),
                 "wc -l %.2fM lines/s" % (a.omadm_lines / t_wc / 1e6),
                 "%.2fx wc's time" % statistics.median(r[2] / r[0] for r in rounds), ""))
    os.unlink(path)


# ---------------------------------------------------------------- 2./3./5. fleets

SQLITE_BASE_SCHEMA = """
PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-131072;
CREATE TABLE ev(ident TEXT NOT NULL UNIQUE, device TEXT, source TEXT, platform TEXT,
  stage TEXT, cert TEXT, ts TEXT NOT NULL, profile TEXT, txn TEXT, thumbprint TEXT,
  serial TEXT, request_id TEXT, subject TEXT, template TEXT, requester TEXT, detail TEXT,
  file TEXT, line_offset INTEGER);
CREATE INDEX ev_req ON ev(request_id) WHERE request_id IS NOT NULL;
"""
COLS = ["device", "source", "platform", "stage", "cert", "ts", "profile", "txn", "thumbprint",
        "serial", "request_id", "subject", "template", "requester", "detail", "file", "offset"]


def events_csv(a, fleet, out):
    """The fleet's events as CSV for the sqlite3 baseline; returns (events, JSON bytes)."""
    agent = os.path.join(a.bin, "scepwatch-agent")
    n = jbytes = 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        for cmd in ([agent, "parse", "--format", "android_omadm", "--device-from-dir",
                     "--files-from", os.path.join(fleet, "files.txt")],
                    [agent, "parse", "--format", "ca_certutil_csv",
                     os.path.join(fleet, "server", "certutil-view.csv")]):
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=ENV)
            for line in p.stdout:
                jbytes += len(line)
                ev = json.loads(line)
                # laid out like the aggregator's identity: device, time, content hash
                ident = "%s|%s|%s" % (ev.get("device", ""), ev.get("ts", ""),
                                      hashlib.blake2b(line, digest_size=12).hexdigest())
                w.writerow([ident] +
                           [ev.get(c, "") for c in COLS])
                n += 1
            if p.wait() != 0:
                sys.exit("bench: %s failed" % " ".join(cmd))
    return n, jbytes


def bench_fleet(a, n, rows, wire_rows):
    fleet = os.path.join(a.work, "fleet-%d" % n)
    log("fleet of %d enrollments: generating" % n)
    subprocess.run([sys.executable, os.path.join(HERE, "fleetgen.py"), "--seed", "1",
                    "--bench-enrollments", str(n), "--out", fleet], check=True,
                   stderr=subprocess.DEVNULL)
    agent = os.path.join(a.bin, "scepwatch-agent")
    cli = os.path.join(a.bin, "scepwatch")
    raw_bytes = sum(os.path.getsize(p.strip()) for p in open(os.path.join(fleet, "files.txt")))
    raw_bytes += os.path.getsize(os.path.join(fleet, "server", "certutil-view.csv"))
    timed(["cat", os.path.join(fleet, "files.txt")])

    # the sqlite3 shell's import of the same events: the storage engine alone
    csvf = os.path.join(a.work, "events-%d.csv" % n)
    nev, jbytes = events_csv(a, fleet, csvf)

    def import_once():
        base = os.path.join(a.work, "baseline-%d.db" % n)
        subprocess.run(["sqlite3", base, SQLITE_BASE_SCHEMA], check=True, capture_output=True)
        # the fleet and the CSV were just written (or the last round's database): their
        # dirty pages go to disk now, not while an import or an upload is being timed
        os.sync()
        t = timed(["sqlite3", base, ".import --csv %s ev" % csvf])[0]
        for sfx in ("", "-wal", "-shm"):
            if os.path.exists(base + sfx):
                os.unlink(base + sfx)
        return t

    def upload(agg):
        os.sync()
        t0 = time.perf_counter()
        _, _, err1 = timed([agent, "send", "--aggregator", agg.url, "--format", "android_omadm",
                            "--device-from-dir", "--files-from", os.path.join(fleet, "files.txt")])
        _, _, err2 = timed([agent, "send", "--aggregator", agg.url, "--format", "ca_certutil_csv",
                            os.path.join(fleet, "server", "certutil-view.csv")])
        return time.perf_counter() - t0, err1, err2

    # three rounds of the import beside an upload into a fresh aggregator; the last
    # round's aggregator stays for the queries (only it is correlated).  This machine's
    # load drifts by more than the differences measured: the same 1M upload took 15 s
    # to 23 s within an hour, so one round is not a figure.
    nrounds = 3
    log("fleet of %d enrollments: ingest (%d events, %d round%s)"
        % (n, nev, nrounds, "s" if nrounds > 1 else ""))
    ingest_rounds = []
    for i in range(nrounds - 1):
        t_import = import_once()
        scratch = Aggregator(a.bin, a.work, "agg-%d-round%d" % (n, i))
        try:
            t_ingest = upload(scratch)[0]
        finally:
            scratch.stop()
        for sfx in ("", "-wal", "-shm", "-derived", "-derived-wal", "-derived-shm"):
            if os.path.exists(scratch.db + sfx):
                os.unlink(scratch.db + sfx)
        ingest_rounds.append((t_ingest, t_import))
        log("  round %d: upload %.2f s (%.0fk ev/s), import %.2f s"
            % (i + 1, t_ingest, nev / t_ingest / 1e3, t_import))
    t_import = import_once()
    os.unlink(csvf)
    agg = Aggregator(a.bin, a.work, "agg-%d" % n)
    try:
        t_ingest, err1, err2 = upload(agg)
        ingest_rounds.append((t_ingest, t_import))
        log("  round %d: upload %.2f s (%.0fk ev/s), import %.2f s"
            % (nrounds, t_ingest, nev / t_ingest / 1e3, t_import))
        e1, w1, r1 = sent_line(err1)
        e2, w2, r2 = sent_line(err2)
        events = e1 + e2
        if events != nev:
            sys.exit("bench: sent %d events, parse printed %d" % (events, nev))
        t_ingest = statistics.median(r[0] for r in ingest_rounds)
        t_import = statistics.median(r[1] for r in ingest_rounds)
        rows.append(("ingest: %dk enrollments, %d events, events/s end to end%s"
                     % (n // 1000, events,
                        " (median of %d)" % nrounds if nrounds > 1 else ""),
                     "%.0fk ev/s" % (events / t_ingest / 1e3),
                     "sqlite3 .import %.0fk ev/s" % (nev / t_import / 1e3),
                     "%.2fx the import's time"
                     % statistics.median(r[0] / r[1] for r in ingest_rounds), ">= 300k ev/s"))
        wire = w1 + w2
        proto = w1 * r1 + w2 * r2
        wire_rows.append((n, events, wire, proto, jbytes, raw_bytes))

        log("fleet of %d enrollments: queries" % n)
        url = ["--aggregator", agg.url]
        # the first answer waits for correlation (up to 10 s a call, then answers with a note
        # saying how much is still waiting): ask until the note is gone
        t0 = time.perf_counter()
        while True:
            err = timed([cli] + url + ["summary"])[2]
            if "still correlating" not in err:
                break
        t_catch = time.perf_counter() - t0
        # the derived database was just written (a gigabyte at 1M): its pages go to disk
        # now, not under the queries timed next
        os.sync()
        derived = agg.db + "-derived"
        t_summary, b_summary, q_summary = paired(
            [cli] + url + ["summary"],
            ["sqlite3", derived, "SELECT platform, COUNT(*), SUM(status = 1),"
             " SUM(status NOT IN (0, 1, 2)), SUM(status = 2) FROM enrollments GROUP BY platform"],
            a.repeat)
        t_stuck, b_stuck, q_stuck = paired(
            [cli] + url + ["stuck"],
            ["sqlite3", derived, "SELECT * FROM enrollments WHERE status NOT IN (0, 1, 2)"
             " ORDER BY rowkey"], a.repeat)
        r = subprocess.run([cli] + url + ["stuck", "--format", "csv"], capture_output=True,
                           env=ENV, check=True)
        nstuck = max(0, r.stdout.count(b"\n") - 1)
        exp = os.path.join(a.work, "export.csv")
        t_export, b_export, q_export = paired(
            [cli] + url + ["export", "--csv", exp],
            ["sqlite3", "-csv", derived, "SELECT * FROM enrollments e LEFT JOIN"
             " issuances i ON i.request_id = e.request_id ORDER BY e.rowkey"], min(a.repeat, 3))
        nrows = sum(1 for _ in open(exp)) - 1
        os.unlink(exp)
        k = "%dk" % (n // 1000)
        rows.append(("%s: correlation done after ingest (first complete answer)" % k,
                     "%.1f s" % t_catch, "", "", ""))
        rows.append(("%s: summary" % k, "%.0f ms" % (t_summary * 1e3),
                     "sqlite3 GROUP BY %.0f ms" % (b_summary * 1e3),
                     "%.2fx" % q_summary, ""))
        rows.append(("%s: stuck (%d rows, table)" % (k, nstuck),
                     "%.0f ms" % (t_stuck * 1e3),
                     "sqlite3 SELECT %.0f ms" % (b_stuck * 1e3),
                     "%.2fx" % q_stuck, "<= 100 ms"))
        rows.append(("%s: export --csv (%d rows)" % (k, nrows), "%.2f s" % t_export,
                     "sqlite3 -csv %.2f s" % b_export, "%.2fx" % q_export,
                     "<= 5 s at 1M"))
    finally:
        agg.stop()
    if not a.keep:
        shutil.rmtree(fleet)
        for f in os.listdir(a.work):
            if f.startswith("agg-%d." % n) and not f.endswith(".log"):
                os.unlink(os.path.join(a.work, f))


# ---------------------------------------------------------------- 4. agent RSS

def bench_tail(a, rows):
    n = a.tail_files
    fleet = os.path.join(a.work, "tail-fleet")
    subprocess.run([sys.executable, os.path.join(HERE, "fleetgen.py"), "--seed", "2",
                    "--bench-enrollments", str(n * 20), "--out", fleet], check=True,
                   stderr=subprocess.DEVNULL)
    files = [p.strip() for p in open(os.path.join(fleet, "files.txt"))][:n]
    agent = os.path.join(a.bin, "scepwatch-agent")
    nev = 0
    p = subprocess.Popen([agent, "parse", "--format", "android_omadm", "--device-from-dir",
                          "--files-from", os.path.join(fleet, "files.txt")],
                         stdout=subprocess.PIPE)
    for _ in p.stdout:
        nev += 1
    p.wait()
    agg = Aggregator(a.bin, a.work, "agg-tail")
    state = os.path.join(a.work, "agent-state")
    try:
        ag = subprocess.Popen([agent, "run", "--aggregator", agg.url, "--state-dir", state,
                               "--format", "android_omadm",
                               os.path.join(fleet, "devices", "{device}", "OMADM.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = 0
        stored = -1
        t0 = time.time()
        while time.time() - t0 < 300:
            peak = max(peak, rss_kib(ag.pid)[1])
            r = subprocess.run([os.path.join(a.bin, "scepwatch"), "--aggregator", agg.url,
                                "health"], capture_output=True, text=True)
            w = r.stdout.split()
            if "events" in w:
                stored = int(w[w.index("events") - 1])
            if stored >= nev:
                break
            time.sleep(0.2)
        if stored != nev:
            sys.exit("bench: the agent shipped %d of %d events" % (stored, nev))
        time.sleep(3)
        idle, hwm = rss_kib(ag.pid)
        peak = max(peak, hwm)
        ag.terminate()
        ag.wait()
    finally:
        agg.stop()
    tl = subprocess.Popen(["tail", "-q", "-F"] + files, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(3)
    t_rss = rss_kib(tl.pid)[0]
    tl.terminate()
    tl.wait()
    rows.append(("agent RSS following %d files (%d events shipped), peak" % (n, nev),
                 "%.1f MiB" % (peak / 1024), "tail -F %.1f MiB" % (t_rss / 1024),
                 "%.2fx" % (peak / max(1, t_rss)), "<= 10 MiB"))
    rows.append(("agent RSS idle after shipping", "%.1f MiB" % (idle / 1024), "", "", ""))
    if not a.keep:
        shutil.rmtree(fleet)
        shutil.rmtree(state, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--scales", default="100000,1000000",
                    help="fleet sizes in enrollments, comma-separated")
    ap.add_argument("--omadm-lines", type=int, default=1000000)
    ap.add_argument("--tail-files", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, one repeat: checks that the suite runs (CI)")
    ap.add_argument("--markdown", help="also write the table here (for the README)")
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    if a.smoke:
        a.scales, a.omadm_lines, a.tail_files, a.repeat = "2000", 20000, 20, 1
    for tool in ("sqlite3", "grep", "wc", "tail"):
        if not shutil.which(tool):
            sys.exit("bench: needs %s (deploy/setup.sh installs it)" % tool)
    for prog in ("scepwatch-agent", "scepwatch-aggregator", "scepwatch"):
        if not os.access(os.path.join(a.bin, prog), os.X_OK):
            sys.exit("bench: no %s in %s (build first: deploy/bench.sh does)" % (prog, a.bin))
    own = not a.work
    a.work = a.work or tempfile.mkdtemp(prefix="scepwatch-bench.")
    os.makedirs(a.work, exist_ok=True)
    rows, wire_rows = [], []
    t0 = time.time()
    try:
        log("parse")
        bench_parse(a, rows)
        for n in [int(x) for x in a.scales.split(",") if x]:
            bench_fleet(a, n, rows, wire_rows)
        log("agent RSS")
        bench_tail(a, rows)
        for n, events, wire, proto, jbytes, raw in wire_rows:
            rows.append(("wire: bytes/event after zstd (%dk fleet)" % (n // 1000),
                         "%.1f B" % (wire / events),
                         "JSON Lines %.0f B, raw log %.0f B" % (jbytes / events, raw / events),
                         "%.1fx smaller than JSON; zstd %.1fx" % (jbytes / wire, proto / wire),
                         "<= 32 B"))
    finally:
        if own and not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    head = ("figure", "scepwatch", "baseline (same run)", "ratio", "target")
    width = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    lines = ["  ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip() for r in [head] + rows]
    print("scepwatch bench, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("machine: " + machine())
    print("\n".join(lines))
    print("(%.0f s)" % (time.time() - t0))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("Machine: %s. Run: %s.\n\n" % (machine(),
                                                  time.strftime("%Y-%m-%d", time.gmtime())))
            f.write("| " + " | ".join(head) + " |\n|" + "---|" * 5 + "\n")
            for r in rows:
                f.write("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
