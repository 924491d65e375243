#!/usr/bin/env python3
"""fleet_accuracy.py - ships a generated fleet (tests/fleetgen.py) through the real agent and
aggregator and compares `scepwatch export --csv` with the generator's truth.csv.

usage: fleet_accuracy.py BIN_DIR FLEET_DIR [--min 0.99] [--shuffle SEED]

Device rows are matched per (device, profile) in time order; CA-only rows by request id.
Prints the accuracy, the confusion of the misses, and 'fleet: N passed, N failed'.
Exit 0 when accuracy >= --min."""
import argparse, collections, csv, json, os, random, shutil, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("bin_dir")
ap.add_argument("fleet")
ap.add_argument("--min", type=float, default=0.99)
ap.add_argument("--shuffle", type=int, default=None, help="ship files in a random order")
ap.add_argument("--as-of", default="2030-01-01T00:00:00Z")
a = ap.parse_args()

agent = os.path.join(a.bin_dir, "scepwatch-agent")
cli = os.path.join(a.bin_dir, "scepwatch")
work = tempfile.mkdtemp(prefix="sw-fleet-")
url = "ipc://" + os.path.join(work, "agg.sock")
agg = subprocess.Popen([os.path.join(a.bin_dir, "scepwatch-aggregator"), "--db",
                        os.path.join(work, "db.sqlite"), "--listen", url],
                       stdout=subprocess.PIPE, text=True)
line = agg.stdout.readline()
if "ready" not in line:
    sys.exit("aggregator did not start: " + line)
try:
    m = json.load(open(os.path.join(a.fleet, "manifest.json")))
    jobs = []
    for d in m["devices"]:
        for f in d["files"]:
            jobs.append(f)
    for f in m["server"]:
        jobs.append(f)
    if a.shuffle is not None:
        random.Random(a.shuffle).shuffle(jobs)
    t0 = time.time()
    for f in jobs:
        args = list(f.get("args") or ["--format", f["format"]])
        r = subprocess.run([agent, "send", "--aggregator", url] + args + [os.path.join(a.fleet, f["path"])],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"send {f['path']}: {r.stderr.strip()}")
    out = os.path.join(work, "report.csv")
    r = subprocess.run([cli, "--aggregator", url, "export", "--csv", out, "--as-of", a.as_of],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("export: " + r.stderr)
    got = list(csv.DictReader(open(out, newline="")))
    truth = list(csv.DictReader(open(os.path.join(a.fleet, "truth.csv"), newline="")))
finally:
    agg.terminate()
    agg.wait()
    shutil.rmtree(work, ignore_errors=True)

def by_key(rows, tkey):
    g = collections.defaultdict(list)
    for r in rows:
        if r["device"]:
            g[(r["device"], r["profile"][:8])].append(r)
        else:
            g[("", r["request_id"])].append(r)
    for k in g:
        g[k].sort(key=lambda r: r[tkey] or "")
    return g

gt = by_key(truth, "requested_at")
gg = by_key(got, "requested_at")
ok = total = 0
misses = collections.Counter()
for k, rows in gt.items():
    mine = gg.get(k, [])
    for i, t in enumerate(rows):
        total += 1
        s = mine[i]["status"] if i < len(mine) else "(missing)"
        if s == t["status"]:
            ok += 1
        else:
            misses[(t["status"], s)] += 1
extra = sum(max(0, len(gg.get(k, [])) - len(v)) for k, v in gt.items()) + \
        sum(len(v) for k, v in gg.items() if k not in gt)
acc = ok / total if total else 0.0
print(f"fleet {a.fleet}: {ok}/{total} enrollments with the right status ({acc:.3%}), "
      f"{extra} extra rows, {len(jobs)} files shipped in {time.time() - t0:.1f}s")
for (want, have), n in misses.most_common():
    print(f"  {n} x truth {want} -> got {have}")
passed = acc >= a.min
print(f"fleet: {1 if passed else 0} passed, {0 if passed else 1} failed")
sys.exit(0 if passed else 1)
