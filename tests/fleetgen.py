#!/usr/bin/env python3
"""fleetgen.py - a deterministic synthetic Intune SCEP fleet: device logs, CA and NDES logs, and
the ground truth the correlator must find in them.  Python 3.11 standard library only.

Three modes:

  fleet   python3 tests/fleetgen.py --seed N --devices D --out DIR
              [--start 2024-03-14T08:00:00Z] [--hours 8] [--mix installed=0.6,...]
              [--fail-mix badRequest=1,...] [--noise-ratio 0.8] [--duplicates 0.05]
              [--burst 0.3] [--max-skew-ms 2000] [--binary-cert] [--no-expected]
          writes DIR/devices/<device>/{OMADM.log|console*.txt|DeviceManagement-Admin.xml},
          DIR/server/{certutil-view.csv,Security-CA.xml,u_exYYMMDD.log},
          DIR/manifest.json (how to ship every file), DIR/truth.csv (one row per enrollment)
          and DIR/expected/<file>.jsonl (the events `scepwatch-agent parse` must print for
          each file, in the shape of shared/samples, plus "_row" = the truth.csv row).
  scale   python3 tests/fleetgen.py --seed 1 --omadm-lines 1000000 --scep-ratio 0.2 --out FILE
          one big Android OMADM.log for parser throughput benchmarks.
  bench   python3 tests/fleetgen.py --seed 1 --bench-enrollments 100000 --out DIR
          a large Android fleet (20 enrollments a device) and its CA export, for the
          aggregator benchmarks (deploy/bench.sh).
  check   python3 tests/fleetgen.py --check DIR --agent build/bin/scepwatch-agent [--auto]
              [--strict]
          parses every file of DIR with the manifest's flags and compares with expected/.
  (tests/fleet_accuracy.py ships a fleet through agent and aggregator and scores the
  `scepwatch export --csv` report against truth.csv.)

Same seed and arguments give byte-identical output: one random.Random(seed), sorted
iteration, no clock.  Line shapes follow shared/samples/README.md section 3; the outcomes,
the link keys and what each looks like in the logs are described in `describe_outcomes()`
(printed by --describe).
"""

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import types
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

US = 1_000_000
MIN = 60 * US
HOUR = 60 * MIN
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

STATUSES = ["installed", "waiting_user_install", "waiting_user_access", "failed", "pending",
            "issued_not_delivered", "requested_not_issued"]
DEFAULT_MIX = {"installed": 0.60, "waiting_user_install": 0.04, "waiting_user_access": 0.04,
               "failed": 0.10, "pending": 0.05, "issued_not_delivered": 0.06,
               "requested_not_issued": 0.06,
               # not statuses of device enrollments:
               "orphan": 0.03,    # share of CA issuance rows with no device in the fleet
               "retry": 0.05,     # retries after a failure, as a share of first enrollments
               "renewal": 0.03,   # renewals weeks later, as a share of first enrollments
               "via_pending": 0.15}  # share of installed ones that went through CA PENDING
FAIL_KINDS = ["badRequest", "badMessageCheck", "badAlg", "badTime", "badCertId", "ca_denied",
              "install_failed", "http_error", "cacert_mismatch"]
HANGING = ("pending", "issued_not_delivered", "requested_not_issued")
DEFAULT_FAIL_MIX = {"badRequest": 1, "badMessageCheck": 1, "badAlg": 1, "badTime": 1,
                    "badCertId": 1, "ca_denied": 2, "install_failed": 2, "http_error": 1,
                    "cacert_mismatch": 1}

EVENT_KEYS = ("source", "platform", "device", "ts", "stage", "cert", "profile", "txn",
              "thumbprint", "serial", "request_id", "subject", "template", "requester", "detail")

NDES_HOST = "https://ndes-contoso.msappproxy.net"
MSCEP = "/certsrv/mscep/mscep.dll"
WIN_MSCEP = MSCEP + "/pkiclient.exe"
CA_HOST = "CA01.contoso.com"
CA_NAME = "Contoso Issuing CA"
NDES_SVC = "CONTOSO\\svc-ndes"
S_IP = "10.20.0.15"
CONNECTOR_IPS = ["10.20.0.21", "10.20.0.22"]
PLUGIN_IP = "fe80::f53d:89b8:c3e8:5fec%13"
WIN_UA = "Mozilla/4.0+(compatible;+Win32;+NDES+client+10.0.22631.3155/ni_release)"
IOS_UA = "profiled/1.0+CFNetwork/1494.0.7+Darwin/23.4.0"
ANDROID_UAS = ["Dalvik/2.1.0+(Linux;+U;+Android+14;+Pixel+7+Build/UQ1A.240205.004)",
               "Dalvik/2.1.0+(Linux;+U;+Android+13;+SM-G991B+Build/TP1A.220624.014)",
               "Dalvik/2.1.0+(Linux;+U;+Android+12;+moto+g(60)+Build/S2RIS32.32-20-7)",
               "Dalvik/2.1.0+(Linux;+U;+Android+14;+SM-S911B+Build/UP1A.231005.007)"]
IIS_FIELDS = ["date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port",
              "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status",
              "sc-substatus", "sc-win32-status", "time-taken"]
IIS_FIELDS_BYTES = IIS_FIELDS[:-1] + ["sc-bytes", "time-taken"]
CERTUTIL_HEADER = ["Issued Request ID", "Requester Name", "Request Submission Date",
                   "Request Resolution Date", "Request Disposition",
                   "Request Disposition Message", "Request Status Code", "Serial Number",
                   "Certificate Hash", "Certificate Template", "Issued Common Name",
                   "Issued Distinguished Name", "Certificate Effective Date",
                   "Certificate Expiration Date", "Revocation Date"]
STATUS_OK = "0x0 (WIN32: 0 ERROR_SUCCESS) -- The operation completed successfully."
TEMPLATE_DENIED = ("0x80094012 (-2146877422 CERTSRV_E_TEMPLATE_DENIED) -- The permissions on the "
                   "certificate template do not allow the current user to enroll for this type "
                   "of certificate.")
ADMIN_DENIED = ("0x80094014 (-2146877420 CERTSRV_E_ADMIN_DENIED_REQUEST) -- The request was "
                "denied by a certificate manager or CA administrator.")

# Windows event 32 HRESULTs per failure kind.  Only 0x80091007 is from a source (the sample);
# the others are real Windows codes chosen to fit, not observed in DM logs.
WIN_HRESULT = {"badRequest": "0x80070057", "badMessageCheck": "0x80090006",
               "badAlg": "0x80090008", "badTime": "0x800B0101", "badCertId": "0x80094002",
               "ca_denied": "0x80094012", "http_error": "0x801901F4",
               "cacert_mismatch": "0x80091007"}
WIN_INSTALL_FAIL = "0x80090016"

PROFILE_DEFS = [("Wi-Fi", "IntuneSCEPWiFi"), ("VPN", "IntuneSCEPVPN"),
                ("Email", "IntuneSCEPUser")]
FIRST = ["jdoe", "asmith", "mlee", "rkhan", "bwhite", "cgarcia", "dnguyen", "epatel", "fmuller",
         "grossi", "hkim", "ijones", "kwong", "lmartin", "nsato", "olsen", "pdubois", "qadams",
         "rlopez", "ssilva", "tmoreau", "ubrown", "vclark", "wlewis", "xyang", "yhall", "zward"]
IOS_OFFSETS = [-480, -420, -360, -300, -240, 0, 60, 120, 330, 540]


# ---------------------------------------------------------------- time formatting

def dtm(t):
    return EPOCH + timedelta(microseconds=t)


def iso(t):
    d = dtm(t)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (d.year, d.month, d.day, d.hour, d.minute,
                                                     d.second, d.microsecond)


def parse_start(s):
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return (d - EPOCH) // timedelta(microseconds=1)


def ts7(t, digit):
    """Android/Windows 7-digit fraction; truncating the 7th digit gives t exactly."""
    d = dtm(t)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d%d" % (d.year, d.month, d.day, d.hour, d.minute,
                                                      d.second, d.microsecond, digit)


def en_us(t):
    """certutil date: M/D/YYYY h:mm AM|PM (minute precision, t floored)."""
    d = dtm(t)
    h = d.hour % 12 or 12
    return "%d/%d/%d %d:%02d %s" % (d.month, d.day, d.year, h, d.minute,
                                    "AM" if d.hour < 12 else "PM")


def floor_to(t, unit):
    return t - t % unit


def offset_str(minutes):
    sign = "-" if minutes < 0 else "+"
    m = abs(minutes)
    return "%s%02d%02d" % (sign, m // 60, m % 60)


# ---------------------------------------------------------------- DER (fake but well formed)

def der(tag, body):
    n = len(body)
    if n < 0x80:
        ln = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        ln = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + ln + body


def der_int(v):
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return der(0x02, b)


def der_oid(dotted):
    parts = [int(x) for x in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(enc))
    return der(0x06, bytes(out))


def der_name(cn):
    atv = der(0x30, der_oid("2.5.4.3") + der(0x0C, cn.encode()))
    return der(0x30, der(0x31, atv))


def der_time(t):
    d = dtm(t)
    return der(0x17, d.strftime("%y%m%d%H%M%SZ").encode())


def make_spki(rng):
    """An RSA-2048-shaped SubjectPublicKeyInfo (random odd modulus; never used to verify)."""
    n = rng.getrandbits(2048) | (1 << 2047) | 1
    rsa = der(0x30, der_int(n) + der_int(65537))
    alg = der(0x30, der_oid("1.2.840.113549.1.1.1") + b"\x05\x00")
    return der(0x30, alg + der(0x03, b"\x00" + rsa))


def make_cert(serial_hex, subject_cn, not_before, not_after, spki, rng):
    sigalg = der(0x30, der_oid("1.2.840.113549.1.1.11") + b"\x05\x00")
    tbs = der(0x30, der(0xA0, der_int(2)) + der_int(int(serial_hex, 16)) + sigalg
              + der_name(CA_NAME) + der(0x30, der_time(not_before) + der_time(not_after))
              + der_name(subject_cn) + spki)
    sig = der(0x03, b"\x00" + rng.randbytes(256))
    return der(0x30, tbs + sigalg + sig)


# ---------------------------------------------------------------- model

class Profile:
    def __init__(self, name, template, guid, acct, hsh):
        self.name, self.template, self.guid, self.acct, self.hash = name, template, guid, acct, hsh
        g_ = guid.replace("-", "_")
        self.android_key = "ModelName=AC_%s%%2FLogicalName_%s;Hash=%d" % (acct, g_, hsh)
        self.ios_key = "ModelName=AC_%s/LogicalName_%s;Hash=%d" % (acct, g_, hsh)
        self.win_key = "ModelName_AC_%s_LogicalName_%s_Hash_%d" % (acct, g_, hsh)


class Line:
    """One device log line (or event).  text/events may be callables, evaluated at render
    time, once CA request ids, serials and thumbprints are known."""
    __slots__ = ("t", "seq", "text", "evs", "enr", "scep")

    def __init__(self, t, seq, text, evs, enr, scep):
        self.t, self.seq, self.text, self.evs, self.enr, self.scep = t, seq, text, evs, enr, scep


class Device:
    def __init__(self, did, platform, user, idx):
        self.id, self.platform, self.user, self.idx = did, platform, user, idx
        self.lines = []
        self.enrollments = []
        self.busy_until = 0
        self.spans = []          # (start, end) of activity, for noise placement
        self.skew = 0
        self.style = None
        self.offset_min = 0
        self.utf16 = False
        self.pid = 0
        self.sid = ""
        self.ua = ""
        self.ios_get = False


class CaRec:
    """One CA request.  Request ids are assigned after simulation, in receive order."""

    def __init__(self, t_recv, template, subject_cn, requester, enr):
        self.t_recv, self.template, self.cn, self.requester, self.enr = (t_recv, template,
                                                                         subject_cn, requester,
                                                                         enr)
        self.rid = None
        self.pending_at = None     # 4889 time
        self.issued_at = None      # 4887 time
        self.denied_at = None      # 4888 time (ca_denied) ...
        self.deny_kind = None      # "template" | "admin"
        self.revoked_at = None
        self.serial = self.thumb = self.der = None
        self.spki = None
        self.row = None            # truth.csv row of the enrollment or orphan
        self.ghost = None          # orphans: the enrollment of the device we have no logs of
        self.plain_cn = False      # a server certificate (DNS name, not a UPN)


class Enrollment:
    def __init__(self, dev, profile, t0, outcome, fail_kind, gen):
        self.dev, self.profile, self.t0 = dev, profile, t0
        self.outcome, self.fail_kind = outcome, fail_kind   # outcome: a STATUS
        self.gen = gen               # "first", "retry", "renewal"
        self.variant = ""
        self.ca = None
        self.txn = ""
        self.spki = None
        self.requested_at = None     # device time
        self.installed_at = None
        self.end = t0
        self.row = None
        self.detail = ""
        self.first_at = t0           # true time of the first device line
        self.block_end = t0          # Android: when the next profile may start
        self.get_msg = None          # iOS GET: the base64 message of the first request


# ---------------------------------------------------------------- the generator

class Fleet:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.seq = 0
        self.start = parse_start(args.start)
        self.window = int(args.hours * HOUR)
        self.mix = dict(DEFAULT_MIX)
        self.mix.update(args.mix)
        self.fail_mix = dict(DEFAULT_FAIL_MIX)
        self.fail_mix.update(args.fail_mix)
        self.iis = []         # (t_done, seq, fields dict, ev dict or None, row-holder)
        self.cas = []         # CaRec
        self.sec_noise = []   # (t, eid, data)
        self.devices = []
        self.profiles = []
        self.enrollments = []
        self.orphans = []     # CaRec with no device

    # -- random helpers
    def u(self, lo, hi):
        return int(self.rng.uniform(lo, hi) * US)

    def hexs(self, n):
        return "%0*x" % (n, self.rng.getrandbits(4 * n))

    def guid(self):
        """A version-4 shaped GUID, lower case."""
        h = list(self.hexs(32))
        h[12] = "4"
        h[16] = "89ab"[int(h[16], 16) & 3]
        h = "".join(h)
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def pick(self, weights):
        keys = sorted(weights)
        tot = sum(weights[k] for k in keys)
        x = self.rng.random() * tot
        for k in keys:
            x -= weights[k]
            if x < 0:
                return k
        return keys[-1]

    def nextseq(self):
        self.seq += 1
        return self.seq

    # -- set-up
    def make_profiles(self):
        acct = self.guid()
        for name, tmpl in PROFILE_DEFS:
            self.profiles.append(Profile(name, tmpl, self.guid(), acct,
                                         self.rng.randint(-2**31, 2**31 - 1)))

    def make_devices(self):
        n = self.a.devices
        plats = ["android", "ios", "windows"] * (n // 3 + 1)
        plats = plats[:n]
        self.rng.shuffle(plats)
        used = set()
        for i, plat in enumerate(plats):
            user = "%s%d@contoso.com" % (FIRST[i % len(FIRST)], i // len(FIRST) + 1)
            if plat == "android":
                did = "and-%04d-%s" % (i + 1, user.split("@")[0])
            elif plat == "ios":
                did = "ios-%04d-%s" % (i + 1, user.split("@")[0])
            else:
                while True:
                    host = "DESKTOP-" + "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789")
                                                for _ in range(7))
                    if host not in used:
                        break
                used.add(host)
                did = host + ".contoso.com"
            d = Device(did, plat, user, i)
            mx = self.a.max_skew_ms
            d.skew = self.rng.randint(-mx, mx) * 1000 if mx else 0
            d.pid = self.rng.randint(2000, 32000)
            if plat == "android":
                d.style = self.rng.choice(["tab", "space"])
                d.ua = self.rng.choice(ANDROID_UAS)
            elif plat == "ios":
                d.style = self.rng.choice(["tab", "space"])
                d.offset_min = self.rng.choice(IOS_OFFSETS)
                d.ios_get = self.rng.random() < 0.3
            else:
                d.utf16 = self.rng.random() < 0.3
                d.sid = "S-1-12-1-%d-%d-%d-%d" % tuple(self.rng.randint(10**9, 4 * 10**9)
                                                        for _ in range(4))
            self.devices.append(d)

    def outcome_for(self, plat):
        w = {k: self.mix[k] for k in STATUSES}
        if plat != "android":
            w.pop("waiting_user_install")
            w.pop("waiting_user_access")
        return self.pick(w)

    def fail_for(self, plat):
        k = self.pick(self.fail_mix)
        if plat == "ios" and k == "install_failed":
            k = "ca_denied"          # iOS logs no install failure that the parser maps
        if plat != "windows" and k == "cacert_mismatch":
            k = "http_error"
        return k

    def new_enrollment(self, dev, prof, t0, gen, outcome=None):
        if outcome is None:
            outcome = self.outcome_for(dev.platform)
        fk = self.fail_for(dev.platform) if outcome == "failed" else ""
        e = Enrollment(dev, prof, t0, outcome, fk, gen)
        e.spki = make_spki(self.rng)
        if dev.platform == "android":
            e.txn = hashlib.sha1(e.spki).hexdigest().upper()
        dev.enrollments.append(e)
        self.enrollments.append(e)
        return e

    # -- line helpers
    def add(self, dev, t, text, evs, e, scep=True):
        """Device line at true time t (written at t + the device's clock skew)."""
        dev.lines.append(Line(t + dev.skew, self.nextseq(), text, evs, e, scep))
        if e is not None and t > e.end:
            e.end = t

    def iis_add(self, t_done, method, stem, query, cip, ua, status, sub=0, win32=0, taken_ms=15,
                e=None):
        """One NDES IIS line, logged when the response completes (t_done); e is the
        enrollment it belongs to (its truth row goes into the expected event)."""
        f = {"cs-method": method, "cs-uri-stem": stem, "cs-uri-query": query or "-",
             "c-ip": cip, "cs(User-Agent)": ua, "sc-status": str(status),
             "sc-substatus": str(sub), "sc-win32-status": str(win32),
             "time-taken": str(taken_ms), "sc-bytes": str(self.rng.randint(200, 4000)),
             "s-ip": S_IP if cip != PLUGIN_IP else PLUGIN_IP}
        if stem.startswith("/CertificateRegistrationSvc"):
            f["s-ip"] = PLUGIN_IP
        self.iis.append((t_done, self.nextseq(), f, e))

    def cip(self):
        return self.rng.choice(CONNECTOR_IPS)

    # -- server side of one SCEP exchange
    def http_get(self, dev, t_send, op, e, status=200, win32=0):
        """A GetCACert/GetCACaps from a device; returns the device's receive time."""
        lat = self.u(0.05, 0.4)
        taken = self.rng.randint(0, 60) if op == "GetCACaps" else self.rng.randint(15, 200)
        t_done = t_send + lat + taken * 1000
        if dev is None:
            stem, query, ua = MSCEP, "operation=%s&message=ca" % op, self.rng.choice(ANDROID_UAS)
        elif dev.platform == "windows":
            stem, query, ua = WIN_MSCEP, "operation=%s&message=default" % op, WIN_UA
        elif dev.platform == "ios":
            stem, query, ua = MSCEP, "operation=%s&message=SCEP%%20Authority" % op, IOS_UA
        else:
            stem, query, ua = MSCEP, "operation=%s&message=ca" % op, dev.ua
        self.iis_add(t_done, "GET", stem, query, self.cip(), ua, status, 0, win32, taken, e)
        return t_done + self.u(0.02, 0.3)

    def pki_query(self, e):
        if e is not None and e.get_msg:
            return "GET", "operation=PKIOperation&message=" + e.get_msg
        return "POST", "operation=PKIOperation"

    def pki_stem_ua(self, dev):
        if dev is None:
            return MSCEP, self.rng.choice(ANDROID_UAS)
        if dev.platform == "windows":
            return WIN_MSCEP, WIN_UA
        if dev.platform == "ios":
            return MSCEP, IOS_UA
        return MSCEP, dev.ua

    def pki_exchange(self, dev, t_send, e, mode, poll=False):
        """One PKIOperation as NDES sees it.  mode: 'lost' (never reaches NDES), 'gone' (NDES
        answers, the client is gone), 'http500', 'challenge' (VerifyRequest 403), 'reject'
        (NDES rejects before the policy module), 'submit' (new CA request: the caller then
        decides the disposition), 'poll' (GetCertInitial), 'poll_issued' (poll that gets the
        certificate: Notify).  Returns (t_done, device receive time, t_ca) or None for lost."""
        if mode == "lost":
            return None
        stem, ua = self.pki_stem_ua(dev)
        method, query = self.pki_query(e) if not poll else ("POST", "operation=PKIOperation")
        ta = t_send + self.u(0.2, 1.5)
        cip = self.cip()
        t_ca = None
        if mode == "http500":
            taken = self.rng.randint(30, 400)
            self.iis_add(ta + taken * 1000, method, stem, query, cip, ua, 500, 0, 0, taken, e)
        elif mode == "challenge":
            tv = ta + self.u(0.2, 0.5)
            self.iis_add(tv, "POST", "/CertificateRegistrationSvc/Certificate/VerifyRequest", None,
                         PLUGIN_IP, "NDES_Plugin", 403, 16, 2148204809,
                         self.rng.randint(300, 500), e)
            taken = (tv - ta) // 1000 + self.rng.randint(20, 80)
            self.iis_add(ta + taken * 1000, method, stem, query, cip, ua, 200, 0, 0, taken, e)
        elif mode == "reject":
            taken = self.rng.randint(20, 90)
            self.iis_add(ta + taken * 1000, method, stem, query, cip, ua, 200, 0, 0, taken, e)
        elif mode in ("submit", "gone"):
            tv = ta + self.u(0.2, 0.45)
            self.iis_add(tv, "POST", "/CertificateRegistrationSvc/Certificate/VerifyRequest", None,
                         PLUGIN_IP, "NDES_Plugin", 201, 0, 0, self.rng.randint(250, 460), e)
            t_ca = tv + self.u(0.05, 0.2)
            taken = (t_ca - ta) // 1000 + self.rng.randint(150, 400)
            self.iis_add(ta + taken * 1000, method, stem, query, cip, ua, 200, 0,
                         64 if mode == "gone" else 0,
                         taken + (self.rng.randint(20000, 60000) if mode == "gone" else 0), e)
        elif mode in ("poll", "poll_issued", "notify_fail"):
            taken = self.rng.randint(60, 180)
            if mode != "poll":
                self.iis_add(ta + (taken - 20) * 1000, "POST",
                             "/CertificateRegistrationSvc/Certificate/Notify", None, PLUGIN_IP,
                             "NDES_Plugin", 204, 0, 0, self.rng.randint(50, 70), e)
            self.iis_add(ta + taken * 1000, method, stem, query, cip, ua, 200, 0, 0, taken, e)
        t_done = ta + taken * 1000
        return t_done, t_done + self.u(0.05, 0.4), t_ca

    def notify(self, t, e):
        self.iis_add(t, "POST", "/CertificateRegistrationSvc/Certificate/Notify", None, PLUGIN_IP,
                     "NDES_Plugin", 204, 0, 0, self.rng.randint(50, 70), e)

    def ca_new(self, t, e, cn=None, template=None, requester=NDES_SVC):
        rec = CaRec(t, template or e.profile.template, cn or e.dev.user, requester, e)
        rec.spki = e.spki if e is not None else make_spki(self.rng)
        self.cas.append(rec)
        if e is not None:
            e.ca = rec
        return rec

    # -- plan of one enrollment: the server's answers, in order
    def plan(self, e):
        """Decides e.variant: how the outcome comes about (see describe_outcomes())."""
        o, fk = e.outcome, e.fail_kind
        r = self.rng
        if o in ("installed", "waiting_user_install", "waiting_user_access"):
            if o == "installed" and r.random() < self.mix["via_pending"]:
                e.variant = "via_pending"
            else:
                e.variant = "direct"
        elif o == "failed":
            e.variant = fk
            if fk == "http_error" and e.dev.platform != "windows" and r.random() < 0.5:
                e.variant = "http_cacert"
        elif o == "issued_not_delivered":
            e.variant = "gaveup" if r.random() < 0.35 else "lost"
        elif o == "pending":
            e.variant = "pending"
        else:
            e.variant = "lost"

    # -- platform flows
    def flow(self, e):
        self.plan(e)
        p = e.dev.platform
        if p == "android":
            self.flow_android(e)
        elif p == "ios":
            self.flow_ios(e)
        else:
            self.flow_windows(e)

    def poll_interval(self, dev):
        if dev.platform == "ios":
            return 60 * US + self.u(0.0, 0.02)
        return 5 * MIN + self.u(0.0, 1.5)

    def pki_and_polls(self, e, t_send):
        """Runs the server side of a PKIOperation and its polls according to e.variant.
        Returns a list of (device receive time, answer, t_send of that request) where answer
        is SUCCESS/PENDING/FAILURE/HTTP500; an empty list means no answer reached the
        device."""
        v, dev = e.variant, e.dev
        r = self.rng
        out = []
        e.block_end = t_send
        if v == "lost" and e.outcome == "requested_not_issued":
            self.pki_exchange(dev, t_send, e, "lost")
            return out
        if v == "lost":                  # issued_not_delivered: CA issues, device never hears
            res = self.pki_exchange(dev, t_send, e, "gone")
            rec = self.ca_new(res[2], e)
            rec.issued_at = res[2] + self.u(0.06, 0.15)
            return out
        if v == "http_error":
            res = self.pki_exchange(dev, t_send, e, "http500")
            return [(res[1], "HTTP500", t_send)]
        if v == "badRequest":
            res = self.pki_exchange(dev, t_send, e, "challenge")
            return [(res[1], "FAILURE", t_send)]
        if v in ("badMessageCheck", "badAlg", "badTime"):
            res = self.pki_exchange(dev, t_send, e, "reject")
            return [(res[1], "FAILURE", t_send)]
        res = self.pki_exchange(dev, t_send, e, "submit")
        t_done, t_recv, t_ca = res
        e.block_end = t_recv
        rec = self.ca_new(t_ca, e)
        t_disp = t_ca + self.u(0.06, 0.15)
        if v in ("direct", "install_failed"):
            rec.issued_at = t_disp
            self.notify(t_done - self.u(0.01, 0.1), e)
            return [(t_recv, "SUCCESS", t_send)]
        if v == "ca_denied":
            rec.denied_at, rec.deny_kind = t_disp, "template"
            self.notify(t_done - self.u(0.01, 0.1), e)
            return [(t_recv, "FAILURE", t_send)]
        # everything else starts PENDING at the CA
        rec.pending_at = t_disp
        out.append((t_recv, "PENDING", t_send))
        if v == "via_pending":
            issue_delay = self.u(1.5, 5.5) * 60 if dev.platform == "ios" else \
                self.u(2.0, 25.0) * 60
            rec.issued_at = t_disp + issue_delay
            while True:
                t_send = t_recv + self.poll_interval(dev)
                if t_send > rec.issued_at:
                    res = self.pki_exchange(dev, t_send, e, "poll_issued", poll=True)
                    out.append((res[1], "SUCCESS", t_send))
                    return out
                res = self.pki_exchange(dev, t_send, e, "poll", poll=True)
                t_recv = res[1]
                out.append((t_recv, "PENDING", t_send))
        if v == "badCertId":
            npoll = r.randint(1, 3)
            rec.denied_at, rec.deny_kind = None, "admin"
            for i in range(npoll):
                t_send = t_recv + self.poll_interval(dev)
                if i == npoll - 1:
                    rec.denied_at = t_send - self.u(2, 40)
                    res = self.pki_exchange(dev, t_send, e, "notify_fail", poll=True)
                    out.append((res[1], "FAILURE", t_send))
                else:
                    res = self.pki_exchange(dev, t_send, e, "poll", poll=True)
                    out.append((res[1], "PENDING", t_send))
                t_recv = res[1]
            return out
        if v in ("pending", "gaveup"):
            if v == "pending":
                npoll = r.randint(2, 8) if dev.platform == "ios" else r.randint(1, 8)
            else:
                npoll = r.randint(0, 2)
            for _ in range(npoll):
                t_send = t_recv + self.poll_interval(dev)
                res = self.pki_exchange(dev, t_send, e, "poll", poll=True)
                t_recv = res[1]
                out.append((t_recv, "PENDING", t_send))
            if v == "gaveup":
                rec.issued_at = t_recv + self.u(5, 45) * 60
            return out
        raise AssertionError(v)

    # ---- Android
    def flow_android(self, e):
        dev, prof, r = e.dev, e.profile, self.rng
        url = NDES_HOST + MSCEP
        tid = r.choice([10, 12, 15, 17, 23])
        CEM = "com.microsoft.omadm.platforms.android.certmgr.CertificateEnrollmentManager"
        GET = "org.jscep.transport.UrlConnectionGetTransport"
        POST = "org.jscep.transport.UrlConnectionPostTransport"
        ENC = "org.jscep.message.PkiMessageEncoder"
        TX = "org.jscep.transaction.EnrollmentTransaction"
        SM = "com.microsoft.omadm.platforms.android.certmgr.state.NativeScepCertInstallStateMachine"
        CSM = "com.microsoft.omadm.platforms.android.certmgr.CertificateStoreManager"

        def A(t, lvl, logger, msg, stage=None, th=tid, **kw):
            evs = [dict(stage=stage, cert="scep", **kw)] if stage else []
            self.add(dev, t, ("A", lvl, logger, th, msg), evs, e)

        t = e.t0
        A(t, "VERB", CEM, "Trying to enroll certificate request: " + prof.android_key,
          "profile_received", profile=prof.guid)
        e.first_at = t
        for op in ("GetCACert", "GetCACaps"):
            t += self.u(0.3, 0.9)
            A(t, "VERB", GET, "Sending %s(ca) to %s?operation=%s&message=ca" % (op, url, op),
              "cacert_requested" if op == "GetCACert" else "cacaps_requested")
            if e.variant == "http_cacert" and op == "GetCACert":
                t = self.http_get(dev, t, op, e, 500, 1346)
                A(t, "VERB", GET, "Received '500 Internal Server Error' when sending %s(ca) to "
                  "%s?operation=%s&message=ca" % (op, url, op), "enroll_failed",
                  detail="500 Internal Server Error")
                e.detail = "500 Internal Server Error"
                e.requested_at = e.first_at + dev.skew
                e.block_end = t
                return
            t = self.http_get(dev, t, op, e)
            A(t, "VERB", GET, "Received '200 OK' when sending %s(ca) to %s?operation=%s"
              "&message=ca" % (op, url, op),
              "cacert_received" if op == "GetCACert" else "cacaps_received")
        t += self.u(0.2, 1.0)
        A(t, "VERB", ENC, "Encoding message: org.jscep.message.PkcsReq@%s[messageData=org."
          "spongycastle.pkcs.PKCS10CertificationRequest@%s,messageType=PKCS_REQ,senderNonce="
          "Nonce [%s],transId=%s]" % (self.hexs(8), self.hexs(7), self.hexs(32).upper(), e.txn),
          "enroll_requested", txn=e.txn)
        e.requested_at = t + dev.skew
        t += self.u(0.03, 0.08)
        A(t, "VERB", ENC, "Signing pkiMessage using key belonging to [dn=CN=%s; serial=1]"
          % dev.user)
        t += self.u(0.01, 0.05)
        cms = self.hexs(8)
        A(t, "VERB", TX, "Sending org.spongycastle.cms.CMSSignedData@" + cms)
        answers = self.pki_and_polls(e, t)
        if not answers:
            if e.outcome == "requested_not_issued" and r.random() < 0.5:
                A(t + self.u(20, 60), "WARN", "com.microsoft.omadm.utils.NetworkUtils",
                  "Network connectivity changed: isConnected=false type=%s"
                  % r.choice(["WIFI", "MOBILE"]))
            return
        first = True
        for (t_recv, ans, t_req) in answers:
            t = t_recv
            cms = self.hexs(8)
            if not first:
                A(t_req - self.u(0.9, 1.1), "VERB", ENC, "Encoding message: org.jscep.message."
                  "GetCertInitial@%s[messageData=org.jscep.asn1.IssuerAndSubject@%s,messageType="
                  "GET_CERT_INITIAL,senderNonce=Nonce [%s],transId=%s]"
                  % (self.hexs(8), self.hexs(8), self.hexs(32).upper(), e.txn), th=tid + 3)
            first = False
            if ans == "HTTP500":
                A(t, "VERB", POST, "Received '500 Internal Server Error' when sending org."
                  "spongycastle.cms.CMSSignedData@%s to %s?operation=PKIOperation" % (cms, url),
                  "enroll_failed", detail="500 Internal Server Error")
                e.detail = "500 Internal Server Error"
                return
            A(t, "VERB", POST, "Received '200 OK' when sending org.spongycastle.cms."
              "CMSSignedData@%s to %s?operation=PKIOperation" % (cms, url))
            t += self.u(0.01, 0.07)
            A(t, "VERB", TX, "Received response org.spongycastle.cms.CMSSignedData@" + self.hexs(8))
            for msg in ("Validating SCEP message exchange", "Matched transaction IDs",
                        "Matched request senderNonce and response recipientNonce",
                        "Nonce [%s] has not been encountered before" % self.hexs(32).upper(),
                        "SCEP message exchange validated successfully"):
                t += self.u(0.0005, 0.002)
                A(t, "VERB", TX, msg)
            t += self.u(0.001, 0.01)
            fi = "<null>"
            md = "<null>"
            if ans == "FAILURE":
                fi = "badRequest" if e.variant == "ca_denied" else e.variant
                stage, kw = "enroll_failed", {"txn": e.txn, "detail": "failInfo=" + fi}
                e.detail = "failInfo=" + fi
            elif ans == "PENDING":
                stage, kw = "enroll_pending", {"txn": e.txn}
            else:
                md = "org.spongycastle.cms.CMSSignedData@" + self.hexs(8)
                stage, kw = "enroll_issued", {"txn": e.txn}
            A(t, "VERB", TX, "Response: org.jscep.message.CertRep@%s[failInfo=%s,pkiStatus=%s,"
              "recipientNonce=Nonce [%s],messageData=%s,messageType=CERT_REP,senderNonce=Nonce "
              "[%s],transId=%s]" % (self.hexs(8), fi, ans, self.hexs(32).upper(), md,
                                    self.hexs(32).upper(), e.txn), stage, **kw)
        if answers[-1][1] != "SUCCESS":
            return
        key = prof.android_key

        def S(t, x, y, stage, th, **kw):
            kw.setdefault("profile", prof.guid)
            A(t, "INFO", SM, "SCEP cert '%s' state changed from %s to %s" % (key, x, y), stage,
              th=th, **kw)
        t += self.u(0.1, 0.3)
        S(t, "CERT_ENROLLED", "CERT_INSTALL_REQUESTED", "install_requested", tid)
        t += self.u(0.003, 0.01)
        A(t, "INFO", CSM, "Posting notification: install certificate for " + prof.name)
        if e.outcome == "waiting_user_install":
            if r.random() < 0.5:
                t += self.u(15 * 60, 90 * 60)
                S(t, "CERT_INSTALL_REQUESTED", "CERT_INSTALL_REQUESTED", "install_requested", 9)
            return
        t += self.u(20, 25 * 60)
        S(t, "CERT_INSTALL_REQUESTED", "CERT_INSTALLING", "installing", 0)
        t += self.u(0.3, 1.2)
        if e.variant == "install_failed":
            S(t, "CERT_INSTALLING", "CERT_INSTALL_FAILED", "install_failed", 14,
              detail="CERT_INSTALL_FAILED")
            e.detail = "CERT_INSTALL_FAILED"
            return
        S(t, "CERT_INSTALLING", "CERT_ACCESS_REQUESTED", "access_requested", 14)
        if e.outcome == "waiting_user_access":
            return
        t += self.u(5, 10 * 60)
        S(t, "CERT_ACCESS_REQUESTED", "CERT_ACCESS_GRANTED", "access_granted", 21)
        e.installed_at = t + dev.skew

    # ---- iOS
    def flow_ios(self, e):
        dev, prof, r = e.dev, e.profile, self.rng
        url = NDES_HOST + MSCEP

        def I(t, typ, msg, stage=None, proc="profiled", scep=True, **kw):
            evs = [dict(stage=stage, cert="scep", **kw)] if stage else []
            self.add(dev, t, ("I", typ, proc, msg), evs, e, scep)

        t = e.t0
        I(t, "default", "Processing server request: InstallProfile", proc="mdmd", scep=False)
        t += self.u(0.2, 0.6)
        e.first_at = t
        I(t, "debug", "Performing synchronous URL request: %s?operation=GetCACert&message="
          "SCEP%%20Authority" % url, "cacert_requested")
        if e.variant == "http_cacert":
            t = self.http_get(dev, t, "GetCACert", e, 500, 1346)
            I(t, "debug", "URL request failed. Status code: 500")
            t += self.u(0.0002, 0.001)
            I(t, "error", "Cannot retrieve SCEP identity: NSError: Desc : A network error "
              "occurred. US Desc: A network error occurred. Domain : MCSCEPErrorDomain Code : "
              "22005 Type : MCFatalError", "enroll_failed", detail="MCSCEPErrorDomain 22005")
            e.detail = "MCSCEPErrorDomain 22005"
            I(t + self.u(0.0001, 0.0003), "error", "Rolling back installation of profile")
            e.requested_at = e.first_at + dev.skew
            return
        t = self.http_get(dev, t, "GetCACert", e)
        I(t, "debug", "URL request succeeded.")
        t += self.u(0.0001, 0.0003)
        I(t, "debug", "GetCACert returned an RA certificate.", "cacert_received")
        t += self.u(0.005, 0.01)
        I(t, "debug", "Adding dependent %s to parent 6365727400000000000000%02d in domain "
          "PayloadDependencyDomainCertificate to system" % (prof.ios_key, r.randint(10, 99)),
          "profile_received", profile=prof.guid)
        t += self.u(0.001, 0.003)
        I(t, "debug", "Performing synchronous URL request: %s?operation=GetCACaps&message="
          "SCEP%%20Authority" % url, "cacaps_requested")
        t = self.http_get(dev, t, "GetCACaps", e)
        I(t, "debug", "URL request succeeded.")
        t += self.u(0.005, 0.015)
        I(t, "default", "Attempting to retrieve issued certificate...")
        t += self.u(0.0001, 0.0003)
        I(t, "debug", "Sending CSR via %s." % ("GET" if dev.ios_get else "POST"), "csr_generated")
        t += self.u(0.0001, 0.0003)
        if dev.ios_get:
            e.get_msg = base64.b64encode(r.randbytes(r.randint(900, 1300))).decode()

        def req(t, poll):
            msg = "Performing synchronous URL request: %s?operation=PKIOperation" % url
            if e.get_msg and not poll:
                msg += "&message=" + e.get_msg
            I(t, "debug", msg, "enroll_requested")
        req(t, False)
        e.requested_at = t + dev.skew
        answers = self.pki_and_polls(e, t)
        for i, (t_recv, ans, t_req) in enumerate(answers):
            if i > 0:
                I(t_req - self.u(0.0001, 0.0003), "default",
                  "Attempting to retrieve issued certificate...")
                req(t_req, True)
            t = t_recv
            if ans == "HTTP500":
                I(t, "debug", "URL request failed. Status code: 500")
                t += self.u(0.0002, 0.001)
                I(t, "error", "Cannot retrieve SCEP identity: NSError: Desc : A network error "
                  "occurred. US Desc: A network error occurred. Domain : MCSCEPErrorDomain Code : "
                  "22005 Type : MCFatalError", "enroll_failed", detail="MCSCEPErrorDomain 22005")
                e.detail = "MCSCEPErrorDomain 22005"
                I(t + self.u(0.0001, 0.0003), "error", "Rolling back installation of profile")
                return
            I(t, "debug", "URL request succeeded.")
            t += self.u(0.005, 0.012)
            if ans == "PENDING":
                I(t, "default", "Sleeping before polling SCEP server again.", "enroll_pending")
            elif ans == "FAILURE":
                nse = ("NSError: Desc : The SCEP server returned an invalid response. US Desc: "
                       "The SCEP server returned an invalid response. Domain : MCSCEPErrorDomain "
                       "Code : 22013 Type : MCFatalError")
                I(t, "default", "Could not retrieve issued certificate: " + nse, "enroll_failed",
                  detail="MCSCEPErrorDomain 22013")
                t += self.u(0.0002, 0.0006)
                I(t, "error", "Cannot retrieve SCEP identity: " + nse, "enroll_failed",
                  detail="MCSCEPErrorDomain 22013")
                e.detail = "MCSCEPErrorDomain 22013"
                t += self.u(0.0001, 0.0003)
                I(t, "error", "Rolling back installation of profile")
                I(t + self.u(0.05, 0.15), "default", "Presenting alert: Profile Installation "
                  "Failed", proc="SpringBoard", scep=False)
                return
            else:
                I(t, "default", "Issued certificate received.", "enroll_issued")
                t += self.u(0.05, 0.2)
                I(t, "debug", "Adding dependent Microsoft.Profiles.MDM to parent www.windowsintune"
                  ".com.SCEP.%s in domain ManagedProfileToManagingProfile to system" % prof.ios_key,
                  "installing", profile=prof.guid)
                t += self.u(0.02, 0.06)
                q = ("\u201c", "\u201d") if dev.style == "tab" else ('"', '"')
                I(t, "default", "Profile %swww.windowsintune.com.SCEP.%s%s installed."
                  % (q[0], prof.ios_key, q[1]), "installed", profile=prof.guid)
                e.installed_at = t + dev.skew
                if r.random() < 0.6:
                    I(t + self.u(0.005, 0.02), "default", "Profile %scom.contoso.%s.corp%s "
                      "installed." % (q[0], prof.name.lower().replace("-", ""), q[1]))
                return

    # ---- Windows
    def flow_windows(self, e):
        dev, prof, r = e.dev, e.profile, self.rng
        url = NDES_HOST + WIN_MSCEP

        def W(t, eid, data, stage=None, level=4, **kw):
            evs = [dict(stage=stage, cert="scep", **kw)] if stage else []
            self.add(dev, t, ("W", eid, level, data, r.randint(2000, 9999)), evs, e)

        t = e.t0
        W(t, 306, [("Message1", prof.win_key), ("Message2", dev.sid), ("Message3", "user"),
                   ("Message4", "clientinstall"), ("HexInt1", "0x2"), ("HexInt3", "0x2ab0003")],
          "profile_received", profile=prof.guid)
        e.first_at = t
        tg = t + self.u(0.2, 0.8)
        t1 = self.http_get(dev, tg, "GetCACaps", e)
        t2 = self.http_get(dev, t1 + self.u(0.01, 0.05), "GetCACert", e)
        if e.variant == "cacert_mismatch":
            t = t2 + self.u(0.5, 1.5)
            msg = ("SCEPInstallCertificateWithScepHelper:Failed to Initialize SCEP enrollment with "
                   "NDES Server '%s', CA cert thumbprint %s" % (url, self.hexs(40).upper()))
            W(t, 307, [("Message1", msg)], "enroll_failed", level=2, detail=msg)
            t += self.u(0.0001, 0.0005)
            W(t, 32, [("HRESULT", "0x80091007")], "enroll_failed", level=2, detail="0x80091007")
            e.detail = "0x80091007"
            e.requested_at = e.first_at + dev.skew
            return
        t = t2 + self.u(0.1, 0.4)
        W(t, 36, [("Message1", "1.3.6.1.5.5.7.3.2"), ("Message2", url), ("Message3", ""),
                  ("HexInt1", "0x2"), ("HexInt2", "0x1")], "csr_generated")
        e.requested_at = t + dev.skew
        t += self.u(0.3, 1.0)
        answers = self.pki_and_polls(e, t)
        if not answers:
            return
        for i, (t_recv, ans, _) in enumerate(answers):
            t = t_recv + self.u(0.2, 0.8)
            if ans == "PENDING":
                if i == 0:
                    W(t, 309, [("Message1", "{%s}" % self.guid().upper()),
                               ("Message2", prof.win_key), ("Message3", ""), ("Message4", url),
                               ("HexInt1", "0x2"), ("HexInt2", "0x1"), ("HexInt3", "0x0")],
                      "enroll_pending", profile=prof.guid)
                continue
            if ans in ("FAILURE", "HTTP500"):
                code = WIN_HRESULT[e.variant]
                W(t, 32, [("HRESULT", code)], "enroll_failed", level=2, detail=code)
                e.detail = code
                return
            # SUCCESS
            t += self.u(0.8, 2.5)
            corr = "{%s}" % self.guid().upper()
            if e.variant == "install_failed":
                W(t, 309, lambda: [("Message1", corr), ("Message2", prof.win_key),
                                   ("Message3", e.ca.thumb.upper()), ("Message4", url),
                                   ("HexInt1", "0x10"), ("HexInt2", "0x1"),
                                   ("HexInt3", WIN_INSTALL_FAIL)],
                  "install_failed", level=2, profile=prof.guid, thumbprint=lambda: e.ca.thumb,
                  detail=WIN_INSTALL_FAIL)
                e.detail = WIN_INSTALL_FAIL
                return
            W(t, 309, lambda: [("Message1", corr), ("Message2", prof.win_key),
                               ("Message3", e.ca.thumb.upper()), ("Message4", url),
                               ("HexInt1", "0x1"), ("HexInt2", "0x1"), ("HexInt3", "0x0")],
              "installed", profile=prof.guid, thumbprint=lambda: e.ca.thumb)
            e.installed_at = t + dev.skew
            t += self.u(0.005, 0.012)
            W(t, 39, None, "installed")
            return

    # ---- orphan issuances (a device we do not have logs of)
    def orphan(self, t):
        fake = Device("", "android", "%s%d@contoso.com" % (self.rng.choice(FIRST),
                                                           self.rng.randint(100, 999)), -1)
        fake.ua = self.rng.choice(ANDROID_UAS)
        prof = self.rng.choice(self.profiles)
        e = Enrollment(fake, prof, t, "installed", "", "orphan")
        e.spki = make_spki(self.rng)
        t1 = self.http_get(fake, t, "GetCACert", e)
        t2 = self.http_get(fake, t1 + self.u(0.1, 0.5), "GetCACaps", e)
        res = self.pki_exchange(fake, t2 + self.u(0.3, 1.0), e, "submit")
        rec = self.ca_new(res[2], e)
        rec.issued_at = res[2] + self.u(0.06, 0.15)
        self.notify(res[0] - self.u(0.01, 0.1), e)
        rec.enr = None
        rec.ghost = e           # its IIS lines get the orphan's truth row
        self.orphans.append(rec)

    def other_issuance(self, t, cn, template):
        rec = CaRec(t, template, cn, "CONTOSO\\pkiadmin", None)
        rec.spki = make_spki(self.rng)
        rec.issued_at = t + self.u(0.05, 0.2)
        rec.plain_cn = True
        self.cas.append(rec)
        self.orphans.append(rec)

    # ---- simulation
    def simulate(self):
        r = self.rng
        self.make_profiles()
        self.make_devices()
        S, W = self.start, self.window
        # policy pushes: bursts of check-ins; more waves for bigger fleets, so that a wave
        # holds ~15 devices and same-profile requests overlap without being hopeless
        n_waves = max(3, len(self.devices) // 50)
        waves = sorted(S + self.u(0.1, 0.9) * W // US for _ in range(n_waves))
        first_share = {k: self.mix[k] for k in STATUSES}
        tot = sum(first_share.values())
        p_failed = first_share["failed"] / tot
        p_retry = min(1.0, self.mix["retry"] / p_failed) if p_failed else 0.0
        p_inst = first_share["installed"] / tot
        p_renew = min(1.0, self.mix["renewal"] / p_inst) if p_inst else 0.0
        for dev in self.devices:
            k = self.pick({1: 0.3, 2: 0.45, 3: 0.25})
            profs = sorted(r.sample(self.profiles, k), key=lambda p: p.name)
            r.shuffle(profs)
            if r.random() < self.a.burst:
                t = self.rng.choice(waves) + self.u(-180, 180)
            else:
                t = S + self.u(60, max(120, (W - 40 * MIN) / US))
            t = max(S + self.u(1, 30), t)
            self.session(dev, t, [(p, "first", None) for p in profs], p_retry, p_renew)
        # orphans: o / (1 - o) of the other CA issuance rows
        n_issued = sum(1 for c in self.cas if c.issued_at is not None)
        o = self.mix["orphan"]
        n_orph = int(round(n_issued * o / (1 - o))) if o < 1 else 0
        for _ in range(n_orph):
            self.orphan(S + self.u(60, W / US))
        for i in range(self.a.other_issuances):
            self.other_issuance(S + self.u(60, W / US), "web%02d.contoso.com" % (i + 1),
                                "WebServer")

    def session(self, dev, t, items, p_retry, p_renew):
        """One device check-in: enrollments run one after the other.  On iOS and Windows an
        enrollment left hanging (pending, or a request never answered) holds the queue: it goes
        last, and any other hanging one is left to a later check-in, 1-3 hours on."""
        r = self.rng
        t = max(t, dev.busy_until + self.u(30, 120))
        s_start = t
        items = [(p, gen, o or self.outcome_for(dev.platform)) for p, gen, o in items]
        later = []
        if dev.platform != "android":
            hang = [it for it in items if it[2] in HANGING]
            items = [it for it in items if it[2] not in HANGING] + hang[:1]
            later = hang[1:]
        if dev.platform == "android":
            self.add(dev, t - self.u(0.0005, 0.002), ("A", "VERB", "com.microsoft.omadm."
                     "platforms.android.certmgr.CertificateEnrollmentManager", 12,
                     "There are %d requests" % len(items)), [], None)
        elif dev.platform == "windows":
            self.add(dev, t - self.u(1, 3), ("W", 208, 4, win_noise_data(self, 208), 6120), [],
                     None, scep=False)
        ens = []
        for prof, gen, outcome in items:
            ens.append(self.new_enrollment(dev, prof, 0, gen, outcome))
        for e in ens:
            e.t0 = t
            self.flow(e)
            if dev.platform == "android":
                t = e.block_end + self.u(2, 8)
            else:
                t = e.end + self.u(1, 6)
        end = max(e.end for e in ens)
        dev.busy_until = max(dev.busy_until, end)
        dev.spans.append((s_start, end))
        for it in later:
            self.session(dev, end + self.u(60 * 60, 180 * 60), [it], p_retry, p_renew)
        for e in ens:
            if e.gen == "retry" and e.outcome == "failed":
                continue                     # at most one retry in a row
            if e.outcome == "failed" and r.random() < p_retry:
                t_r = e.end + self.u(20 * 60, 120 * 60)
                self.session(dev, t_r, [(e.profile, "retry", None)], p_retry, p_renew)
            elif e.outcome == "installed" and e.gen == "first" and r.random() < p_renew:
                t_r = e.end + self.u(14 * 86400, 42 * 86400)
                self.session(dev, t_r, [(e.profile, "renewal", None)], 0.0, 0.0)
                if r.random() < 0.5 and e.ca is not None:
                    e.ca.revoked_at = dev.enrollments[-1].end + self.u(60, 1800)

    # ---- noise
    def add_noise(self):
        R = self.a.noise_ratio
        for dev in self.devices:
            scep = sum(1 for l in dev.lines if l.scep)
            n = int(round(scep * R / (1 - R))) if R < 1 else 0
            n -= sum(1 for l in dev.lines if not l.scep)
            spans = [(max(self.start - 30 * MIN, a - 45 * MIN), b + 45 * MIN)
                     for a, b in dev.spans]
            lens = [b - a for a, b in spans]
            tot = sum(lens)
            for _ in range(max(0, n)):
                x = self.rng.randrange(tot)
                for (a, b), ln in zip(spans, lens):
                    if x < ln:
                        t = a + x
                        break
                    x -= ln
                self.add(dev, t, noise_line(self, dev), [], None, scep=False)

    # ---- CA: ids, serials, certificates
    def finish_ca(self):
        base = 4000 + self.rng.randint(0, 6000)
        for i, rec in enumerate(sorted(self.cas, key=lambda c: c.t_recv)):   # stable
            rec.rid = base + i
        for rec in self.cas:
            if rec.issued_at is None:
                continue
            rec.serial = "2b%08x%s%012x" % (rec.rid, self.hexs(16), rec.rid)
            nb = floor_to(rec.issued_at, MIN) - 10 * MIN
            na = nb + 365 * DAY + 10 * MIN
            rec.der = make_cert(rec.serial, rec.cn, nb, na, rec.spki, self.rng)
            rec.thumb = hashlib.sha1(rec.der).hexdigest()

    # ---- truth
    def make_truth(self):
        rows = []
        for e in self.enrollments:
            rows.append(e)
        rows.sort(key=lambda e: (e.dev.id, e.requested_at, e.profile.guid))
        out = []
        for i, e in enumerate(rows):
            e.row = i + 1
            if e.ca:
                e.ca.row = e.row
            ca = e.ca
            issued = ca.issued_at if ca and ca.issued_at is not None else None
            out.append([e.dev.id, e.dev.platform, e.profile.guid, e.outcome,
                        str(ca.rid) if ca else "", (ca.serial or "") if ca else "",
                        (ca.thumb or "") if ca else "", e.txn, iso(e.requested_at),
                        iso(issued) if issued is not None else "",
                        iso(e.installed_at) if e.installed_at is not None else ""])
        for rec in sorted(self.orphans, key=lambda c: c.rid):
            rec.row = len(out) + 1
            if rec.ghost is not None:
                rec.ghost.row = rec.row
            out.append(["", "", "", "orphan_issuance", str(rec.rid), rec.serial, rec.thumb, "",
                        iso(rec.t_recv), iso(rec.issued_at), ""])
        self.truth = out

    def stats(self):
        """How hard the fleet is: the noise share of device lines, and how often another
        device asked for the same profile close in time (the time-window linking case)."""
        lines = sum(len(d.lines) for d in self.devices)
        noise = sum(1 for d in self.devices for l in d.lines if not l.scep)
        by_prof = defaultdict(list)
        for e in self.enrollments:
            by_prof[e.profile.guid].append((e.requested_at, e.dev.id))
        near = {60: 0, 10: 0}
        for lst in by_prof.values():
            lst.sort()
            for i, (t, dev) in enumerate(lst):
                for w in near:
                    j, hit = i - 1, False
                    while j >= 0 and t - lst[j][0] <= w * US and not hit:
                        hit = lst[j][1] != dev
                        j -= 1
                    j = i + 1
                    while j < len(lst) and lst[j][0] - t <= w * US and not hit:
                        hit = lst[j][1] != dev
                        j += 1
                    near[w] += hit
        n = len(self.enrollments) or 1
        return {"device_lines": lines, "device_noise_share": round(noise / (lines or 1), 3),
                "enrollments": len(self.enrollments),
                "same_profile_other_device_within_60s": round(near[60] / n, 3),
                "same_profile_other_device_within_10s": round(near[10] / n, 3)}

    # ---- rendering
    def render(self, outdir):
        files = {}
        manifest_devices = []
        expected = {}
        for dev in sorted(self.devices, key=lambda d: d.id):
            dev.lines.sort(key=lambda l: (l.t, l.seq))
            entries = []
            if dev.platform == "android":
                text, evs = render_android(self, dev)
                path = "devices/%s/OMADM.log" % dev.id
                files[path] = text.encode("utf-8")
                expected[path] = evs
                entries.append({"path": path, "format": "android_omadm", "device": dev.id,
                                "date": None})
            elif dev.platform == "ios":
                for k, (date, text, evs) in enumerate(render_ios(self, dev)):
                    name = "console.txt" if k == 0 else "console-%s.txt" % date
                    path = "devices/%s/%s" % (dev.id, name)
                    files[path] = text.encode("utf-8")
                    expected[path] = evs
                    entries.append({"path": path, "format": "ios_console", "device": dev.id,
                                    "date": date})
            else:
                text, evs = render_windows(self, dev)
                path = "devices/%s/DeviceManagement-Admin.xml" % dev.id
                if dev.utf16:
                    files[path] = b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")
                else:
                    files[path] = text.encode("utf-8")
                expected[path] = evs
                entries.append({"path": path, "format": "windows_event_xml", "device": None,
                                "date": None})
            if self.rng.random() < self.a.duplicates:
                for ent in list(entries):
                    dpath = "devices/%s/resent/%s" % (dev.id, os.path.basename(ent["path"]))
                    files[dpath] = files[ent["path"]]
                    expected[dpath] = expected[ent["path"]]
                    dup = dict(ent)
                    dup["path"] = dpath
                    dup["duplicate_of"] = ent["path"]
                    entries.append(dup)
            for ent in entries:
                args = ["--format", ent["format"]]
                if ent["device"]:
                    args += ["--device", ent["device"]]
                if ent["date"]:
                    args += ["--date", ent["date"]]
                ent["args"] = args
                ent["expected"] = "expected/%s.jsonl" % ent["path"]
            manifest_devices.append({
                "device": dev.id, "platform": dev.platform, "user": dev.user,
                "clock_skew_ms": dev.skew // 1000,
                "utc_offset": offset_str(dev.offset_min) if dev.platform == "ios" else None,
                "files": entries,
                "enrollments": [{"row": e.row, "profile": e.profile.guid, "status": e.outcome,
                                 "scenario": e.variant, "generation": e.gen,
                                 "detail": e.detail or None}
                                for e in sorted(dev.enrollments, key=lambda x: x.row)]})
        server = []
        text, evs = render_certutil(self)
        files["server/certutil-view.csv"] = text.encode("utf-8")
        expected["server/certutil-view.csv"] = evs
        server.append({"path": "server/certutil-view.csv", "format": "ca_certutil_csv"})
        text, evs = render_security(self)
        files["server/Security-CA.xml"] = text.encode("utf-8")
        expected["server/Security-CA.xml"] = evs
        server.append({"path": "server/Security-CA.xml", "format": "windows_event_xml"})
        for name, text, evs in render_iis(self):
            files["server/" + name] = text.encode("utf-8")
            expected["server/" + name] = evs
            server.append({"path": "server/" + name, "format": "ndes_iis"})
        for ent in server:
            ent["args"] = ["--format", ent["format"]]
            ent["expected"] = "expected/%s.jsonl" % ent["path"]
        a = self.a
        manifest = {
            "generator": "tests/fleetgen.py",
            "argv": a.argv,
            "arguments": {"seed": a.seed, "devices": a.devices, "start": a.start,
                          "hours": a.hours, "mix": self.mix, "fail_mix": self.fail_mix,
                          "noise_ratio": a.noise_ratio, "duplicates": a.duplicates,
                          "burst": a.burst, "max_skew_ms": a.max_skew_ms,
                          "binary_cert": a.binary_cert, "other_issuances": a.other_issuances},
            "profiles": [{"name": p.name, "guid": p.guid, "template": p.template,
                          "android_key": p.android_key, "ios_key": p.ios_key,
                          "windows_key": p.win_key} for p in self.profiles],
            "truth": "truth.csv",
            "stats": self.stats(),
            "devices": manifest_devices,
            "server": server,
        }
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["device", "platform", "profile", "status", "request_id", "serial",
                    "thumbprint", "txn", "requested_at", "issued_at", "installed_at"])
        w.writerows(self.truth)
        files["truth.csv"] = buf.getvalue().encode()
        files["manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode()
        if not a.no_expected:
            for path, evs in expected.items():
                files["expected/%s.jsonl" % path] = "".join(
                    json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n"
                    for ev in evs).encode("utf-8")
        if os.path.exists(outdir):
            for sub in ("devices", "server", "expected"):
                shutil.rmtree(os.path.join(outdir, sub), ignore_errors=True)
        for path in sorted(files):
            full = os.path.join(outdir, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(files[path])
        return files


# ---------------------------------------------------------------- event helpers

def full_event(source, platform, device, t, ev, row):
    """Completes a device event spec into the parse shape (keys in DESIGN order)."""
    d = {"source": source, "platform": platform}
    if device:
        d["device"] = device
    d["ts"] = iso(t)
    src = {k: (v() if callable(v) else v) for k, v in ev.items()}
    d["stage"] = src.pop("stage")
    for k in EVENT_KEYS:
        if k in src and src[k] not in (None, ""):
            d[k] = src[k]
    if row is not None:
        d["_row"] = row
    return d


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- noise

ANDROID_NOISE = [
    ("INFO", "com.microsoft.omadm.syncml.SyncmlSession",
     lambda g: "Received SyncML message of %d bytes, msgId %d" % (g.rng.randint(800, 9000),
                                                                  g.rng.randint(1, 40))),
    ("INFO", "com.microsoft.omadm.client.OMADMClient",
     lambda g: "Sending SyncML message of %d bytes, msgId %d" % (g.rng.randint(800, 9000),
                                                                 g.rng.randint(1, 40))),
    ("INFO", "com.microsoft.omadm.client.OMADMClient",
     lambda g: "OMADM session started, server https://a.manage.microsoft.com/devicegatewayproxy/"
               "AndroidHandler.ashx"),
    ("INFO", "com.microsoft.omadm.client.OMADMClient",
     lambda g: "OMADM session ended with status 200 after %d ms" % g.rng.randint(300, 9000)),
    ("WARN", "com.microsoft.omadm.utils.NetworkUtils",
     lambda g: "Network connectivity changed: isConnected=%s type=%s"
               % (g.rng.choice(["true", "false"]), g.rng.choice(["WIFI", "MOBILE"]))),
    ("INFO", "com.microsoft.omadm.platforms.android.policy.PasswordPolicyManager",
     lambda g: "Password policy evaluated: minLength=6 quality=NUMERIC compliant=true"),
    ("ERRO", "com.microsoft.omadm.platforms.android.appmgr.ApplicationManager",
     lambda g: "Failed to query package com.contoso.%s: android.content.pm.PackageManager"
               "$NameNotFoundException" % g.rng.choice(["expenses", "timesheet", "intranet"])),
    ("INFO", "com.microsoft.omadm.platforms.android.appmgr.ApplicationManager",
     lambda g: "Application com.microsoft.%s install state: INSTALLED"
               % g.rng.choice(["teams", "outlook", "office.officehubrow", "skydrive"])),
    ("VERB", "com.microsoft.omadm.platforms.android.certmgr.CertificateEnrollmentManager",
     lambda g: "There are 0 requests"),
    ("INFO", "com.microsoft.omadm.platforms.android.wifimgr.WifiProfileManager",
     lambda g: "Applying Wi-Fi profile CONTOSO-CORP: status PENDING_CERTIFICATE"),
    ("WARN", "com.microsoft.omadm.platforms.android.vpn.VpnProfileManager",
     lambda g: "VPN profile update FAILED: certificate not yet available, retrying later"),
    ("VERB", "com.microsoft.omadm.platforms.android.devicepolicy.DevicePolicyManagerWrapper",
     lambda g: "isAdminActive: true"),
    ("INFO", "com.microsoft.windowsintune.companyportal.telemetry.TelemetryManager",
     lambda g: "Flushing %d telemetry events" % g.rng.randint(1, 60)),
    ("INFO", "com.microsoft.intune.mam.client.app.MAMComplianceManager",
     lambda g: "Compliance check complete: state=COMPLIANT"),
    ("VERB", "com.microsoft.omadm.platforms.android.certmgr.CertificateStoreManager",
     lambda g: "Checking certificate store for %d pending notifications" % g.rng.randint(0, 3)),
    ("DEBG", "com.microsoft.omadm.location.LocationService",
     lambda g: "Location request ignored: feature disabled"),
]

IOS_NOISE = [
    ("default", "apsd", lambda g: "Connection established to courier %d-courier.push.apple.com"
     % g.rng.randint(1, 50)),
    ("default", "mdmd", lambda g: "Processing server request: %s" % g.rng.choice(
        ["DeviceInformation", "ProfileList", "InstalledApplicationList", "SecurityInfo",
         "CertificateList"])),
    ("default", "mdmd", lambda g: "Sending response to server: Acknowledged"),
    ("info", "locationd", lambda g: "Client com.apple.weather denied: not authorized"),
    ("debug", "wifid", lambda g: "WiFi:[%d.%06d]: scan results count=%d"
     % (g.rng.randint(7 * 10**8, 8 * 10**8), g.rng.randint(0, 999999), g.rng.randint(1, 30))),
    ("default", "trustd", lambda g: "Trust evaluate completed: result=%d"
     % g.rng.choice([1, 4, 5])),
    ("default", "SpringBoard", lambda g: "Application com.microsoft.%s moved to foreground"
     % g.rng.choice(["Office.Outlook", "skype.teams", "msedge"])),
    ("error", "CommCenter", lambda g: "#E Failed to query carrier bundle: error 45"),
    ("default", "runningboardd", lambda g: "Acquiring assertion for pid %d"
     % g.rng.randint(100, 9999)),
    ("debug", "profiled", lambda g: "Checking profile compliance"),
    ("default", "profiled", lambda g: "Profile \u201ccom.contoso.%s\u201d installed."
     % g.rng.choice(["restrictions", "passcode", "webclip.portal", "appconfig.outlook"])),
    ("debug", "nsurlsessiond", lambda g: "Task <%s>.<1> finished successfully"
     % g.guid().upper()),
]

WIN_NOISE_IDS = [208, 209, 813, 814, 2545, 1004]


def win_noise_data(g, eid):
    r = g.rng
    if eid == 208:
        return [("Message1", "{%s}" % g.guid().upper()), ("Message2", "MS DM Server"),
                ("Message3", "4.0"), ("Message4", "1.2"), ("HexInt1", "0x1"), ("HexInt2", "0x0"),
                ("HexInt3", "0x2"), ("UInt1", str(r.randint(1000, 1100))), ("UInt2", "1")]
    if eid == 209:
        return [("HRESULT", "0x0")]
    if eid == 813:
        return [("Message1", "Policy"), ("Message2", r.choice(["DeviceLock", "Update",
                                                               "Defender", "Experience"])),
                ("Message3", r.choice(["MinDevicePasswordLength", "AllowCamera",
                                       "ActiveHoursStart"])),
                ("Message4", "0x%x" % r.randint(0, 20)), ("HexInt1", "0x0")]
    if eid == 814:
        return [("Message1", "Policy"), ("Message2", "Browser"),
                ("Message3", "HomePages"), ("Message4", "https://intranet.contoso.com")]
    if eid == 2545:
        return [("Message1", "./Vendor/MSFT/NodeCache/MS%20DM%20Server"),
                ("HexInt1", "0x0")]
    return [("Message1", "Status: %d" % r.choice([200, 204]))]


def noise_line(g, dev):
    r = g.rng
    if dev.platform == "android":
        lvl, logger, fn = r.choice(ANDROID_NOISE)
        return ("A", lvl, logger, r.choice([0, 2, 4, 7, 9, 11]), fn(g))
    if dev.platform == "ios":
        typ, proc, fn = r.choice(IOS_NOISE)
        msg = fn(g)
        if dev.style != "tab":
            msg = msg.replace("\u201c", '"').replace("\u201d", '"')
        return ("I", typ, proc, msg)
    eid = r.choice(WIN_NOISE_IDS)
    return ("W", eid, 4, win_noise_data(g, eid), r.randint(2000, 9999))


# ---------------------------------------------------------------- renderers

def render_android(g, dev):
    out = []
    evs = []
    # a root certificate install at the start of the log (cert=root events, not enrollments)
    t0 = dev.lines[0].t - g.u(60, 600) if dev.lines else g.start
    root_id = str(g.rng.randint(10**9, 2 * 10**9))
    root = []
    t = t0
    for k, (x, y, st) in enumerate([("CERT_INSTALL_REQUESTED", "CERT_INSTALL_REQUESTED",
                                     "install_requested"),
                                    ("CERT_INSTALL_REQUESTED", "CERT_INSTALLING", "installing"),
                                    ("CERT_INSTALLING", "CERT_INSTALL_SUCCESS", "installed")]):
        t += g.u(0.3, 90) if k else 0
        root.append(Line(t, -3 + k, ("A", "INFO", "com.microsoft.omadm.platforms.android.certmgr."
                                     "state.NativeRootCertInstallStateMachine", [9, 0, 14][k],
                                     "Root cert '%s' state changed from %s to %s"
                                     % (root_id, x, y)),
                         [{"stage": st, "cert": "root"}], None, True))
    lines = sorted(root + dev.lines, key=lambda l: (l.t, l.seq))
    for l in lines:
        _, lvl, logger, tid, msg = l.text
        ts = ts7(l.t, g.rng.randint(0, 9))
        if dev.style == "tab":
            out.append("%s\t%s\tEvent\t%s\t%d\t%d\t%s" % (ts, lvl, logger, dev.pid, tid, msg))
        else:
            out.append("%s    %s    Event     %s    %5d    %5d    %s"
                       % (ts, lvl, logger, dev.pid, tid, msg))
        for ev in l.evs:
            evs.append(full_event("android_omadm", "android", dev.id, l.t, ev,
                                  l.enr.row if l.enr else None))
    return "\n".join(out) + "\n", evs


def render_ios(g, dev):
    """One file per local calendar date (the lines carry no date; --date names it)."""
    files = []
    cur_date = None
    out, evs = [], []
    off = offset_str(dev.offset_min)
    for l in sorted(dev.lines, key=lambda l: (l.t, l.seq)):
        local = dtm(l.t + dev.offset_min * MIN)
        date = local.strftime("%Y-%m-%d")
        if date != cur_date:
            if out:
                files.append((cur_date, "\n".join(out) + "\n", evs))
            out, evs, cur_date = [], [], date
        _, typ, proc, msg = l.text
        hms = "%02d:%02d:%02d.%06d" % (local.hour, local.minute, local.second, local.microsecond)
        if dev.style == "tab":
            out.append("%s\t%s %s\t%s\t%s" % (typ, hms, off, proc, msg))
        else:
            out.append("%s %s%s %s %s" % (typ, hms, off, proc, msg))
        for ev in l.evs:
            evs.append(full_event("ios_console", "ios", dev.id, l.t, ev,
                                  l.enr.row if l.enr else None))
    if out:
        files.append((cur_date, "\n".join(out) + "\n", evs))
    return files


def win_event_xml(provider, guid, eid, version, level, task, keywords, t, digit, rec_id, pid, tid,
                  channel, computer, security, data, correlation="<Correlation/>"):
    parts = ["<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
             "<Provider Name='%s' Guid='%s'/><EventID>%d</EventID><Version>%d</Version>"
             "<Level>%d</Level><Task>%d</Task><Opcode>0</Opcode><Keywords>%s</Keywords>"
             "<TimeCreated SystemTime='%sZ'/><EventRecordID>%d</EventRecordID>%s"
             "<Execution ProcessID='%d' ThreadID='%d'/><Channel>%s</Channel>"
             "<Computer>%s</Computer>%s</System>"
             % (provider, guid, eid, version, level, task, keywords, ts7(t, digit), rec_id,
                correlation, pid, tid, channel, computer, security)]
    if data is not None:
        parts.append("<EventData>")
        for name, val in data:
            parts.append("<Data Name='%s'>%s</Data>" % (name, xml_escape(val)))
        parts.append("</EventData>")
    parts.append("</Event>")
    return "".join(parts)


DM_PROVIDER = "Microsoft-Windows-DeviceManagement-Enterprise-Diagnostics-Provider"


def render_windows(g, dev):
    out, evs = [], []
    rec = g.rng.randint(10000, 90000)
    for l in sorted(dev.lines, key=lambda l: (l.t, l.seq)):
        _, eid, level, data, tid = l.text
        if callable(data):
            data = data()
        rec += g.rng.randint(1, 3)
        sec = "<Security UserID='%s'/>" % (dev.sid if eid not in (208, 209) else "S-1-5-18")
        out.append(win_event_xml(DM_PROVIDER, "{3da494e4-0fe2-415c-b895-fb5265c5c83b}", eid, 0,
                                 level, 0, "0x8000000000000000", l.t, g.rng.randint(0, 9), rec,
                                 dev.pid if eid not in (208, 209) else 6120, tid,
                                 DM_PROVIDER + "/Admin", dev.id, sec, data))
        for ev in l.evs:
            evs.append(full_event("windows_event_xml", "windows", dev.id, l.t, ev,
                                  l.enr.row if l.enr else None))
    return "\n".join(out) + "\n", evs


def ca_subject(rec):
    return "CN=%s" % rec.cn


def render_security(g):
    """CA01's Security log: 4886 (received), 4889 (pending), 4887 v1 (issued, with serial),
    4888 (denied), 4870 (revoked: not mapped), and 4624/4672 logons as noise."""
    items = []   # (t, seq, eid, version, data, event-or-None)
    seq = 0

    def attrs(rec):
        return "CertificateTemplate:%s\nccm:NDES01.contoso.com" % rec.template

    def base_ev(rec, stage, t, **kw):
        d = {"source": "windows_event_xml", "platform": "ca", "ts": iso(t), "stage": stage}
        d.update(kw)
        d["request_id"] = str(rec.rid)
        out = {}
        for k in EVENT_KEYS:
            if k in d:
                out[k] = d[k]
        if rec.row is not None:
            out["_row"] = rec.row
        return out

    for rec in sorted(g.cas, key=lambda c: c.rid):
        seq += 1
        common = [("RequestId", str(rec.rid)), ("Requester", rec.requester)]
        items.append((rec.t_recv, seq, 4886, 0, common + [("Attributes", attrs(rec))],
                      base_ev(rec, "ca_received", rec.t_recv, template=rec.template,
                              requester=rec.requester)))
        subj = ca_subject(rec)
        if rec.pending_at is not None:
            seq += 1
            items.append((rec.pending_at, seq, 4889, 0,
                          common + [("Attributes", attrs(rec)), ("Disposition", "5"),
                                    ("SubjectKeyIdentifier", ""), ("Subject", subj)],
                          base_ev(rec, "ca_pending", rec.pending_at, subject=subj,
                                  template=rec.template, requester=rec.requester)))
        if rec.issued_at is not None:
            seq += 1
            ski = " ".join("%02x" % b for b in hashlib.sha1(rec.spki).digest())
            san = ("DNS Name=%s" % rec.cn) if rec.plain_cn else \
                ("Principal Name=%s" % rec.cn)
            items.append((rec.issued_at, seq, 4887, 1,
                          common + [("Attributes", attrs(rec)), ("Disposition", "3"),
                                    ("SubjectKeyIdentifier", ski), ("Subject", subj),
                                    ("SubjectAlternativeName", san),
                                    ("CertificateTemplate", rec.template),
                                    ("SerialNumber", rec.serial),
                                    ("AuthenticationService", "Kerberos"),
                                    ("AuthenticationLevel", "Privacy"), ("DCOMorRPC", "DCOM")],
                          base_ev(rec, "ca_issued", rec.issued_at, serial=rec.serial,
                                  subject=subj, template=rec.template,
                                  requester=rec.requester)))
        if rec.denied_at is not None:
            seq += 1
            items.append((rec.denied_at, seq, 4888, 0,
                          common + [("Attributes", attrs(rec)), ("Disposition", "2"),
                                    ("SubjectKeyIdentifier", ""), ("Subject", subj)],
                          base_ev(rec, "ca_denied", rec.denied_at, subject=subj,
                                  template=rec.template, requester=rec.requester)))
        if rec.revoked_at is not None:
            seq += 1
            items.append((rec.revoked_at, seq, 4870, 0,
                          [("SerialNumber", rec.serial), ("Reason", "4")], None))
    # logon noise: the NDES service account logs on before a burst of requests
    times = sorted(i[0] for i in items)
    last = None
    for t in times:
        if last is None or t - last > 20 * MIN:
            seq += 1
            tl = t - g.u(0.5, 8)
            items.append((tl, seq, 4624, 2, [
                ("SubjectUserSid", "S-1-0-0"), ("SubjectUserName", "-"),
                ("SubjectDomainName", "-"), ("SubjectLogonId", "0x0"),
                ("TargetUserSid", "S-1-5-21-3623811015-3361044348-30300820-4102"),
                ("TargetUserName", "svc-ndes"), ("TargetDomainName", "CONTOSO.COM"),
                ("TargetLogonId", "0x%x" % g.rng.getrandbits(28)), ("LogonType", "3"),
                ("LogonProcessName", "Kerberos"), ("AuthenticationPackageName", "Kerberos"),
                ("WorkstationName", "-"), ("IpAddress", "10.20.0.15"),
                ("IpPort", str(g.rng.randint(49152, 65535)))], None))
            seq += 1
            items.append((tl + g.u(0.0005, 0.002), seq, 4672, 0, [
                ("SubjectUserSid", "S-1-5-21-3623811015-3361044348-30300820-4102"),
                ("SubjectUserName", "svc-ndes"), ("SubjectDomainName", "CONTOSO"),
                ("SubjectLogonId", "0x%x" % g.rng.getrandbits(28)),
                ("PrivilegeList", "SeImpersonatePrivilege")], None))
        last = t
    items.sort(key=lambda i: (i[0], i[1]))
    out, evs = [], []
    rec_id = 2200000 + g.rng.randint(0, 99999)
    for t, _, eid, ver, data, ev in items:
        rec_id += g.rng.randint(1, 40)
        task = {4624: 12544, 4672: 12548}.get(eid, 12805)
        out.append(win_event_xml("Microsoft-Windows-Security-Auditing",
                                 "{54849625-5478-4994-a5ba-3e3b0328c30d}", eid, ver, 0, task,
                                 "0x8020000000000000", t, g.rng.randint(0, 9), rec_id, 772,
                                 g.rng.choice([1948, 2116, 3304, 5120]), "Security", CA_HOST,
                                 "<Security/>", data,
                                 "<Correlation ActivityID='{6f1a3c2e-8b4d-0002-5e3c-"
                                 "1a6f4d8bda01}'/>"))
        if ev is not None:
            evs.append(ev)
    return "\n".join(out) + "\n", evs


def render_certutil(g):
    """certutil -view csv: the CA's state when the export was taken (end of the fleet)."""
    header = list(CERTUTIL_HEADER)
    if g.a.binary_cert:
        header.append("Binary Certificate")
    buf = io.StringIO()

    def q(v):
        return "EMPTY" if v is None else '"%s"' % v.replace('"', '""')
    buf.write(",".join('"%s"' % h for h in header) + "\n")
    evs = []
    # the CA's own certificate, request 1 (disposition 15: no event)
    ca_t = g.start - 70 * DAY
    row = ["1", "CONTOSO\\CA01$", en_us(ca_t), en_us(ca_t), "15 -- CA Cert", "Issued", STATUS_OK,
           g.hexs(32), " ".join(g.hexs(2) for _ in range(20)), None, CA_NAME,
           "CN=%s, DC=contoso, DC=com" % CA_NAME, en_us(ca_t - 10 * MIN),
           en_us(ca_t + 3650 * DAY), None]
    rows = [(0, row, None, None)]
    for rec in sorted(g.cas, key=lambda c: c.rid):
        sub = en_us(rec.t_recv)
        subj = ca_subject(rec)
        ev = {"source": "ca_certutil_csv", "platform": "ca"}
        pem = None
        if rec.issued_at is not None:
            res = en_us(rec.issued_at)
            hash_sp = " ".join(rec.thumb[i:i + 2] for i in range(0, 40, 2))
            nb = en_us(floor_to(rec.issued_at, MIN) - 10 * MIN)
            na = en_us(floor_to(rec.issued_at, MIN) + 365 * DAY)
            msg = "Resubmitted by CONTOSO\\pkiadmin" if rec.pending_at is not None else "Issued"
            if rec.revoked_at is not None:
                disp, msg = "21 -- Revoked", "Revoked by CONTOSO\\pkiadmin"
                ev.update(ts=iso(floor_to(rec.revoked_at, MIN)), stage="ca_revoked")
            else:
                disp = "20 -- Issued"
                ev.update(ts=iso(floor_to(rec.issued_at, MIN)), stage="ca_issued")
            row = [str(rec.rid), rec.requester, sub, res, disp, msg, STATUS_OK, rec.serial,
                   hash_sp, rec.template, rec.cn, subj, nb, na,
                   en_us(rec.revoked_at) if rec.revoked_at is not None else None]
            ev.update(thumbprint=rec.thumb, serial=rec.serial, request_id=str(rec.rid),
                      subject=subj, template=rec.template, requester=rec.requester)
            if g.a.binary_cert:     # the parser recomputes jscep's transId from the SPKI
                ev["txn"] = hashlib.sha1(rec.spki).hexdigest().upper()
            b64 = base64.b64encode(rec.der).decode()
            pem = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(
                b64[i:i + 64] for i in range(0, len(b64), 64))
        elif rec.denied_at is not None:
            res = en_us(rec.denied_at)
            if rec.deny_kind == "template":
                msg = ("Denied by Policy Module  0x80094012, The permissions on the certificate "
                       "template do not allow the current user to enroll for this type of "
                       "certificate.")
                code, det = TEMPLATE_DENIED, "0x80094012"
            else:
                msg, code, det = "Denied by CONTOSO\\pkiadmin", ADMIN_DENIED, "0x80094014"
            row = [str(rec.rid), rec.requester, sub, res, "31 -- Denied", msg, code, None, None,
                   rec.template, None, None, None, None, None]
            ev.update(ts=iso(floor_to(rec.denied_at, MIN)), stage="ca_denied",
                      request_id=str(rec.rid), template=rec.template, requester=rec.requester,
                      detail=det)
        else:   # still pending
            row = [str(rec.rid), rec.requester, sub, None, "9 -- Pending",
                   "Taken Under Submission", STATUS_OK, None, None, rec.template, None, None,
                   None, None, None]
            ev.update(ts=iso(floor_to(rec.t_recv, MIN)), stage="ca_pending",
                      request_id=str(rec.rid), template=rec.template, requester=rec.requester)
        out = {}
        for k in EVENT_KEYS:
            if k in ev:
                out[k] = ev[k]
        if rec.row is not None:
            out["_row"] = rec.row
        rows.append((rec.rid, row, out, pem))
    for _, row, ev, pem in rows:
        if g.a.binary_cert:
            row = row + [pem]
        buf.write(",".join(q(v) for v in row) + "\n")
        if ev is not None:
            evs.append(ev)
    buf.write("\n%d Rows\nCertUtil: -view command completed successfully.\n" % len(rows))
    return buf.getvalue(), evs


def iis_event(f, ts, row, has_win32=True):
    stem = f["cs-uri-stem"]
    st = int(f["sc-status"])
    sl = stem.lower()
    ev = None

    def fdetail(op):
        d = "%s %s.%s" % (op, f["sc-status"], f["sc-substatus"])
        if has_win32 and f["sc-win32-status"] != "0":
            d += " win32=%s" % f["sc-win32-status"]
        return d
    if sl == MSCEP or sl.startswith(MSCEP + "/"):
        op = None
        for kv in f["cs-uri-query"].split("&"):
            if kv.startswith("operation="):
                op = kv[len("operation="):]
        if op in ("GetCACert", "GetCACaps", "PKIOperation"):
            if 200 <= st < 300:
                ev = {"stage": "ndes_request", "platform": "ndes", "detail": op}
            elif 400 <= st < 600:
                ev = {"stage": "ndes_error", "platform": "ndes", "detail": fdetail(op)}
    elif sl in ("/certificateregistrationsvc/certificate/verifyrequest",
                "/certificateregistrationsvc/certificate/notify"):
        op = "VerifyRequest" if sl.endswith("verifyrequest") else "Notify"
        ok = "challenge_verified" if op == "VerifyRequest" else "reported"
        bad = "challenge_failed" if op == "VerifyRequest" else "report_failed"
        if 200 <= st < 300:
            ev = {"stage": ok, "platform": "connector"}
        elif 400 <= st < 600:
            ev = {"stage": bad, "platform": "connector", "detail": fdetail(op)}
    if ev is None:
        return None
    out = {"source": "ndes_iis", "platform": ev["platform"], "ts": ts, "stage": ev["stage"]}
    if "detail" in ev:
        out["detail"] = ev["detail"]
    if row is not None:
        out["_row"] = row
    return out


def render_iis(g):
    """NDES IIS W3C logs, one file per UTC day, with noise (health probes, admin pages) and,
    on some days, a restart that writes a new header whose #Fields adds sc-bytes."""
    items = list(g.iis)
    days = sorted(set(floor_to(t, DAY) for t, *_ in items))
    for day in days:
        ts_day = sorted(t for t, *_ in items if floor_to(t, DAY) == day)
        a, b = max(day, ts_day[0] - HOUR), min(day + DAY - 1, ts_day[-1] + HOUR)
        t = a + g.u(0, 300)
        while t < b:
            r = g.rng.random()
            if r < 0.7:
                f = {"cs-method": "GET", "cs-uri-stem": "/", "cs-uri-query": "-",
                     "c-ip": "10.20.0.5", "cs(User-Agent)": "Mozilla/5.0+(Windows+NT;+Windows+NT"
                     "+10.0;+en-US)+WindowsPowerShell/5.1.20348.2227", "sc-status": "200",
                     "sc-substatus": "0", "sc-win32-status": "0", "time-taken": "2"}
            elif r < 0.8:
                f = {"cs-method": "GET", "cs-uri-stem": "/certsrv/mscep_admin/",
                     "cs-uri-query": "-", "c-ip": "10.20.0.8",
                     "cs(User-Agent)": "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+AppleWebKit/"
                     "537.36+(KHTML,+like+Gecko)+Chrome/122.0.0.0+Safari/537.36+Edg/122.0.0.0",
                     "sc-status": "401", "sc-substatus": "2", "sc-win32-status": "5",
                     "time-taken": "1"}
            elif r < 0.9:
                f = {"cs-method": "GET", "cs-uri-stem": "/favicon.ico", "cs-uri-query": "-",
                     "c-ip": "10.20.0.8", "cs(User-Agent)": "Mozilla/5.0+(Windows+NT+10.0;"
                     "+Win64;+x64;+rv:129.0)+Gecko/20100101+Firefox/129.0", "sc-status": "404",
                     "sc-substatus": "0", "sc-win32-status": "2", "time-taken": "0"}
            else:
                # the connector's own health probe: a real GetCACaps, so an ndes_request event
                f = {"cs-method": "GET", "cs-uri-stem": MSCEP,
                     "cs-uri-query": "operation=GetCACaps&message=probe", "c-ip": "10.20.0.5",
                     "cs(User-Agent)": "Mozilla/5.0+(Windows+NT;+Windows+NT+10.0;+en-US)"
                     "+WindowsPowerShell/5.1.20348.2227", "sc-status": "200",
                     "sc-substatus": "0", "sc-win32-status": "0", "time-taken": "0"}
            f["s-ip"] = S_IP
            f["sc-bytes"] = str(g.rng.randint(200, 2000))
            items.append((t, g.nextseq(), f, None))
            t += g.u(120, 600)
    items.sort(key=lambda i: (i[0], i[1]))
    files = []
    for day in days:
        day_items = [i for i in items if floor_to(i[0], DAY) == day]
        restart_at = None
        if len(day_items) > 20 and g.rng.random() < 0.5:
            restart_at = day_items[g.rng.randint(len(day_items) // 3, 2 * len(day_items) // 3)][0]
        fields = IIS_FIELDS
        d0 = dtm(day_items[0][0])
        out = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0",
               "#Date: %s" % d0.strftime("%Y-%m-%d %H:%M:%S"), "#Fields: " + " ".join(fields)]
        evs = []
        for t, _, f, e in day_items:
            if restart_at is not None and t >= restart_at:
                fields = IIS_FIELDS_BYTES if g.rng.random() < 0.5 else IIS_FIELDS
                out += ["#Software: Microsoft Internet Information Services 10.0",
                        "#Version: 1.0", "#Date: %s" % dtm(t).strftime("%Y-%m-%d %H:%M:%S"),
                        "#Fields: " + " ".join(fields)]
                restart_at = None
            d = dtm(t)
            f = dict(f)
            f["date"] = d.strftime("%Y-%m-%d")
            f["time"] = d.strftime("%H:%M:%S")
            f.setdefault("s-port", "443")
            f.setdefault("cs-username", "-")
            f.setdefault("cs(Referer)", "-")
            out.append(" ".join(f.get(k, "-") for k in fields))
            ev = iis_event(f, iso(floor_to(t, US)), e.row if e is not None else None)
            if ev is not None:
                evs.append(ev)
        files.append(("u_ex%s.log" % d0.strftime("%y%m%d"), "\n".join(out) + "\n", evs))
    return files


# ---------------------------------------------------------------- scale mode

def android_keys(rng, n):
    """n certificate request keys as Company Portal logs them (the profile is in LogicalName)."""
    acct = "fd19e485-e013-44c2-b74d-633899d2861d"
    keys = []
    for _ in range(n):
        h = "%032x" % rng.getrandbits(128)
        keys.append("ModelName=AC_%s%%2FLogicalName_%s_%s_%s_%s_%s;Hash=%d" % (
            acct, h[:8], h[8:12], h[12:16], h[16:20], h[20:], rng.randint(-2**31, 2**31 - 1)))
    return keys


def scale(args):
    """One big OMADM.log: args.omadm_lines lines, args.scep_ratio of them from the SCEP loggers
    (jscep and certmgr), interleaved with noise line by line."""
    t_start = time.perf_counter()
    rng = random.Random(args.seed)
    n = args.omadm_lines
    ratio = args.scep_ratio
    url = NDES_HOST + MSCEP
    pid = 22114
    keys = android_keys(rng, 8)
    CEM = "com.microsoft.omadm.platforms.android.certmgr.CertificateEnrollmentManager"
    GET = "org.jscep.transport.UrlConnectionGetTransport"
    POST = "org.jscep.transport.UrlConnectionPostTransport"
    ENC = "org.jscep.message.PkiMessageEncoder"
    TX = "org.jscep.transaction.EnrollmentTransaction"
    SM = "com.microsoft.omadm.platforms.android.certmgr.state.NativeScepCertInstallStateMachine"

    def flow(key, txn, kind):
        """(level, logger, message, emits-an-event) for one enrollment."""
        f = [("VERB", CEM, "There are 1 requests", 0),
             ("VERB", CEM, "Trying to enroll certificate request: " + key, 1)]
        for op in ("GetCACert", "GetCACaps"):
            u = "%s?operation=%s&message=ca" % (url, op)
            f.append(("VERB", GET, "Sending %s(ca) to %s" % (op, u), 1))
            f.append(("VERB", GET, "Received '200 OK' when sending %s(ca) to %s" % (op, u), 1))
        f.append(("VERB", ENC, "Encoding message: org.jscep.message.PkcsReq@6c3f1e2a[messageData="
                  "org.spongycastle.pkcs.PKCS10CertificationRequest@1b7d9e40,messageType=PKCS_REQ"
                  ",senderNonce=Nonce [8C1F0E4D2B6A49F3A7D5C3B1E9F70264],transId=%s]" % txn, 1))
        f.append(("VERB", ENC, "Signing pkiMessage using key belonging to [dn=CN=jdoe@contoso.com;"
                  " serial=1]", 0))
        f.append(("VERB", TX, "Sending org.spongycastle.cms.CMSSignedData@4e7a1b2c", 0))
        answers = {"ok": ["SUCCESS"], "pending": ["PENDING", "PENDING", "SUCCESS"],
                   "fail": ["FAILURE"]}[kind]
        for i, st in enumerate(answers):
            if i:
                f.append(("VERB", ENC, "Encoding message: org.jscep.message.GetCertInitial@4b1f9a27"
                          "[messageData=org.jscep.asn1.IssuerAndSubject@58e3c0d6,messageType="
                          "GET_CERT_INITIAL,senderNonce=Nonce [A1B2C3D4E5F60718293A4B5C6D7E8F90],"
                          "transId=%s]" % txn, 0))
            f.append(("VERB", POST, "Received '200 OK' when sending org.spongycastle.cms."
                      "CMSSignedData@4e7a1b2c to %s?operation=PKIOperation" % url, 0))
            f.append(("VERB", TX, "Validating SCEP message exchange", 0))
            f.append(("VERB", TX, "Response: org.jscep.message.CertRep@5e2b8f17[failInfo=%s,"
                      "pkiStatus=%s,recipientNonce=Nonce [8C1F0E4D2B6A49F3A7D5C3B1E9F70264],"
                      "messageData=<null>,messageType=CERT_REP,senderNonce=Nonce "
                      "[31A7C9E05B2D4F6881E3A5C7092B4D6F],transId=%s]"
                      % ("badRequest" if st == "FAILURE" else "<null>", st, txn), 1))
        if kind != "fail":
            for x, y in (("CERT_ENROLLED", "CERT_INSTALL_REQUESTED"),
                         ("CERT_INSTALL_REQUESTED", "CERT_INSTALLING"),
                         ("CERT_INSTALLING", "CERT_ACCESS_REQUESTED"),
                         ("CERT_ACCESS_REQUESTED", "CERT_ACCESS_GRANTED")):
                f.append(("INFO", SM, "SCEP cert '%s' state changed from %s to %s" % (key, x, y),
                          1))
        return [("%s\tEvent\t%s\t%d\t%d\t%s" % (lvl, lg, pid, 12, m), ev) for lvl, lg, m, ev in f]

    # a pool of flows (each with its own txn) to cycle through
    pool = []
    for i in range(64):
        kind = ("ok", "ok", "ok", "pending", "fail")[i % 5]
        pool.append(flow(keys[i % len(keys)], "%040X" % rng.getrandbits(160), kind))
    noise = []
    gg = types.SimpleNamespace(rng=rng)
    for i in range(512):
        lvl, logger, fn = ANDROID_NOISE[i % len(ANDROID_NOISE)]
        noise.append("%s\tEvent\t%s\t%d\t%d\t%s" % (lvl, logger, pid, rng.choice([0, 2, 7, 9]),
                                                     fn(gg)))
    t = parse_start(args.start)
    sec = None
    prefix = ""
    out = open(args.out, "w", encoding="utf-8", newline="\n")
    chunk = []
    scep_lines = 0
    events = 0
    cur = None
    ci = 0
    fi = 0
    gaps = [rng.randint(0, 40000) for _ in range(4096)]
    digits = "0123456789"
    for i in range(n):
        t += gaps[i & 4095]
        s = t // US
        if s != sec:
            sec = s
            d = dtm(s * US)
            prefix = "%04d-%02d-%02dT%02d:%02d:%02d." % (d.year, d.month, d.day, d.hour,
                                                          d.minute, d.second)
        if scep_lines < ratio * (i + 1):
            if cur is None or ci == len(cur):
                cur = pool[fi % len(pool)]
                fi += 1
                ci = 0
            body, ev = cur[ci]
            ci += 1
            scep_lines += 1
            events += ev
        else:
            body = noise[i % 512]
        chunk.append("%s%06d%s\t%s\n" % (prefix, t % US, digits[i % 10], body))
        if len(chunk) >= 65536:
            out.write("".join(chunk))
            chunk = []
    out.write("".join(chunk))
    out.close()
    dt = time.perf_counter() - t_start
    print("fleetgen scale: %d lines, %d SCEP lines (%.3f), %d expected events, %.2f s -> %s"
          % (n, scep_lines, scep_lines / n if n else 0, events, dt, args.out), file=sys.stderr)


# ---------------------------------------------------------------- bench mode

def bench_fleet(args):
    """A large fleet for the aggregator benchmarks: args.bench_enrollments Android enrollments
    over a year-like span (2,740 a day: a 1M-enrollment fleet covers a year), 20 a device,
    each in devices/<device>/OMADM.log, plus the CA's certutil export.  Four to five device
    lines an enrollment (profile, CSR, SCEP answer, install state) and one noise line; the CA
    row is received within 2 s of the CSR.  Outcomes: 90% installed, 3% failed, 2% pending,
    2% waiting_user_install, 3% requested_not_issued.  Writes DIR/files.txt (every device
    log, for `send --device-from-dir --files-from`)."""
    t_start = time.perf_counter()
    rng = random.Random(args.seed)
    n = args.bench_enrollments
    per_dev = 20
    ndev = max(1, (n + per_dev - 1) // per_dev)
    span = max(DAY, n * DAY // 2740)
    t0 = parse_start(args.start)
    profiles = android_keys(rng, 3)
    templates = ["IntuneSCEPUser", "IntuneSCEPDevice", "IntuneSCEPWifi"]
    CEM = "com.microsoft.omadm.platforms.android.certmgr.CertificateEnrollmentManager"
    ENC = "org.jscep.message.PkiMessageEncoder"
    TX = "org.jscep.transaction.EnrollmentTransaction"
    SM = "com.microsoft.omadm.platforms.android.certmgr.state.NativeScepCertInstallStateMachine"
    noise = [("INFO", "com.microsoft.omadm.syncml.SyncmlSession",
              "Received SyncML message of %d bytes, msgId %d" % (800 + 37 * i, i % 40))
             for i in range(64)]
    day_cache = {}

    def ts(t):
        d, r = divmod(t, DAY)
        pre = day_cache.get(d)
        if pre is None:
            x = dtm(d * DAY)
            pre = day_cache[d] = "%04d-%02d-%02dT" % (x.year, x.month, x.day)
        sec, us = divmod(r, US)
        return "%s%02d:%02d:%02d.%06d0" % (pre, sec // 3600, sec // 60 % 60, sec % 60, us)

    outcomes = ["installed"] * 90 + ["failed"] * 3 + ["pending"] * 2 + \
        ["waiting_user_install"] * 2 + ["requested_not_issued"] * 3
    starts = sorted(rng.randrange(span) for _ in range(n))
    devs = [[] for _ in range(ndev)]
    for i, t in enumerate(starts):
        devs[rng.randrange(ndev)].append(t0 + t)
    ca = []             # (t_recv, t_resolved, disposition, template, cn)
    counts = Counter()
    files = []
    lines_total = 0
    for d in range(ndev):
        name = "bench-%07d" % d
        cn = "user%07d@contoso.com" % d
        out = []
        for t in devs[d]:
            prof = rng.randrange(3)
            key = profiles[prof]
            kind = outcomes[rng.randrange(100)]
            counts[kind] += 1
            txn = "%040X" % rng.getrandbits(160)
            t_req = t + rng.randint(500000, 3000000)
            out.append((t, "VERB\tEvent\t%s\t8812\t12\tTrying to enroll certificate request: %s"
                        % (CEM, key)))
            out.append((t_req, "VERB\tEvent\t%s\t8812\t12\tEncoding message: org.jscep.message."
                        "PkcsReq@6c3f1e2a[messageData=org.spongycastle.pkcs.PKCS10Certification"
                        "Request@1b7d9e40,messageType=PKCS_REQ,senderNonce=Nonce [8C1F0E4D2B6A49F3"
                        "A7D5C3B1E9F70264],transId=%s]" % (ENC, txn)))
            out.append((t_req + 1000, "%s\tEvent\t%s\t8812\t3\t%s" % noise[rng.randrange(64)]))
            if kind == "requested_not_issued":
                continue
            t_recv = t_req + rng.randint(100000, 2000000)
            t_ans = t_recv + rng.randint(100000, 1000000)
            st = {"failed": "FAILURE", "pending": "PENDING"}.get(kind, "SUCCESS")
            disp = {"failed": "31 -- Denied", "pending": "9 -- Pending"}.get(kind, "20 -- Issued")
            ca.append((t_recv, t_ans, disp, templates[prof], cn))
            out.append((t_ans, "VERB\tEvent\t%s\t8812\t12\tResponse: org.jscep.message.CertRep@"
                        "5e2b8f17[failInfo=%s,pkiStatus=%s,recipientNonce=Nonce [8C1F0E4D2B6A49F3A7"
                        "D5C3B1E9F70264],messageData=<null>,messageType=CERT_REP,senderNonce=Nonce "
                        "[31A7C9E05B2D4F6881E3A5C7092B4D6F],transId=%s]"
                        % (TX, "badRequest" if st == "FAILURE" else "<null>", st, txn)))
            if st != "SUCCESS":
                continue
            t_inst = t_ans + rng.randint(2000000, 10000000)
            if kind == "waiting_user_install":
                x, y = "CERT_ENROLLED", "CERT_INSTALL_REQUESTED"
            else:
                x, y = "CERT_ACCESS_REQUESTED", "CERT_ACCESS_GRANTED"
            out.append((t_inst, "INFO\tEvent\t%s\t8812\t14\tSCEP cert '%s' state changed from "
                        "%s to %s" % (SM, key, x, y)))
        out.sort()
        path = os.path.join(args.out, "devices", name)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "OMADM.log"), "w", encoding="utf-8", newline="\n") as f:
            f.write("".join("%s\t%s\n" % (ts(t), body) for t, body in out))
        lines_total += len(out)
        files.append(os.path.join(args.out, "devices", name, "OMADM.log"))
    # the CA: request ids in order of receipt
    ca.sort()
    buf = [",".join('"%s"' % h for h in CERTUTIL_HEADER)]

    def q(v):
        return "EMPTY" if v is None else '"%s"' % v
    for i, (t_recv, t_res, disp, tpl, cn) in enumerate(ca):
        rid = 1000 + i
        if disp.startswith("20"):
            serial = "%038x" % rng.getrandbits(152)
            thumb = " ".join("%02x" % rng.getrandbits(8) for _ in range(20))
            row = [str(rid), NDES_SVC, en_us(t_recv), en_us(t_res), disp, "Issued", STATUS_OK,
                   serial, thumb, tpl, cn, "CN=" + cn, en_us(t_res - 10 * MIN),
                   en_us(t_res + 365 * DAY), None]
        elif disp.startswith("31"):
            row = [str(rid), NDES_SVC, en_us(t_recv), en_us(t_res), disp,
                   "Denied by CONTOSO\\pkiadmin", "0x80094014", None, None, tpl, None, None,
                   None, None, None]
        else:
            row = [str(rid), NDES_SVC, en_us(t_recv), None, disp, "Taken Under Submission",
                   STATUS_OK, None, None, tpl, None, None, None, None, None]
        buf.append(",".join(q(v) for v in row))
    buf.append("\n%d Rows\nCertUtil: -view command completed successfully.\n" % len(ca))
    os.makedirs(os.path.join(args.out, "server"), exist_ok=True)
    with open(os.path.join(args.out, "server", "certutil-view.csv"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write("\n".join(buf))
    with open(os.path.join(args.out, "files.txt"), "w") as f:
        f.write("".join(x + "\n" for x in files))
    print("fleetgen bench: %d enrollments on %d devices over %.0f days, %d device lines, %d CA "
          "rows; %s; %.1f s -> %s" % (n, ndev, span / DAY, lines_total, len(ca),
                                      ", ".join("%s %d" % kv for kv in sorted(counts.items())),
                                      time.perf_counter() - t_start, args.out), file=sys.stderr)


# ---------------------------------------------------------------- check mode

CHECK_KEYS = ("source", "platform", "stage", "ts", "cert", "profile", "txn", "thumbprint",
              "serial", "request_id", "device")
DEVICE_PLATFORMS = ("android", "ios", "windows")
ISSUED_OR_LATER = ("enroll_issued", "install_requested", "installing", "access_requested",
                   "access_granted", "installed", "install_failed")


def ev_key(e, full=True):
    if full:
        return tuple(sorted((k, str(v)) for k, v in e.items()
                            if k not in ("file", "offset", "_row")))
    return tuple(str(e.get(k)) if e.get(k) is not None else None for k in CHECK_KEYS)


def derive_status(platform, evs):
    """DESIGN's status rule over the events of one enrollment (device and linked CA)."""
    dev = [e for e in evs if e["platform"] in DEVICE_PLATFORMS and e.get("cert") == "scep"]
    ca = [e for e in evs if e["platform"] == "ca"]
    issued = any(e["stage"] in ("ca_issued", "ca_revoked") for e in ca)
    if not dev:
        return "orphan_issuance" if issued else "unknown"
    stages = [e["stage"] for e in sorted(dev, key=lambda e: e["ts"])]
    if "installed" in stages or (platform == "android" and "access_granted" in stages):
        return "installed"
    outcomes = sorted([e for e in dev + ca if e["stage"] in (
        "enroll_issued", "enroll_pending", "enroll_failed", "install_failed", "ca_issued",
        "ca_pending", "ca_denied", "ca_revoked", "install_requested", "installing",
        "access_requested")], key=lambda e: e["ts"])
    if outcomes and outcomes[-1]["stage"] in ("enroll_failed", "install_failed", "ca_denied"):
        return "failed"
    if platform == "android":
        inst = [s for s in stages if s in ("install_requested", "installing", "access_requested")]
        if inst:
            return "waiting_user_access" if inst[-1] == "access_requested" else \
                "waiting_user_install"
    if issued and not any(s in ISSUED_OR_LATER for s in stages):
        return "issued_not_delivered"
    answers = [e for e in dev + ca if e["stage"] in ("enroll_pending", "ca_pending",
                                                     "enroll_issued", "enroll_failed")]
    if answers and max(answers, key=lambda e: e["ts"])["stage"] in ("enroll_pending",
                                                                    "ca_pending") and not issued:
        return "pending"
    return "requested_not_issued"


def run_parse(agent, args, path, problems):
    """`agent parse ARGS PATH` as a list of event dicts; trouble goes to problems."""
    r = subprocess.run([agent, "parse"] + args + [path], capture_output=True, timeout=600)
    got = []
    if r.returncode != 0:
        problems.append("%s: agent exit %d: %s" % (path, r.returncode,
                                                  r.stderr.decode(errors="replace")[:200]))
    for l in r.stdout.decode("utf-8", errors="replace").splitlines():
        if l.strip():
            try:
                got.append(json.loads(l))
            except ValueError:
                problems.append("%s: not JSON: %s" % (path, l[:100]))
    return got


def check(args):
    root = args.check
    agent = args.agent
    man = json.load(open(os.path.join(root, "manifest.json")))
    truth = list(csv.DictReader(open(os.path.join(root, "truth.csv"), newline="")))
    problems = []
    notes = []
    by_row = defaultdict(list)        # truth row -> expected events
    got_by_row = defaultdict(list)    # truth row -> parser events matched to expected ones
    per_format = defaultdict(lambda: Counter())
    file_results = {}
    entries = []
    for d in man["devices"]:
        for f in d["files"]:
            entries.append((d, f))
    for f in man["server"]:
        entries.append((None, f))
    for d, f in entries:
        path = os.path.join(root, f["path"])
        exp_path = os.path.join(root, f["expected"])
        if not os.path.exists(exp_path):
            problems.append("%s: no expected file (generated with --no-expected?)" % f["path"])
            continue
        expected = [json.loads(l) for l in open(exp_path, encoding="utf-8") if l.strip()]
        got = run_parse(agent, f["args"], path, problems)
        if args.auto:
            auto_args = list(f["args"])
            auto_args[auto_args.index("--format") + 1] = "auto"
            got_auto = run_parse(agent, auto_args, path, problems)
            if Counter(map(ev_key, got_auto)) != Counter(map(ev_key, got)):
                problems.append("%s: --format auto gives %d events, --format %s %d (or others)"
                                % (f["path"], len(got_auto), f["format"], len(got)))
        c = per_format[f["format"]]
        c["files"] += 1
        c["expected"] += len(expected)
        c["got"] += len(got)
        pool = defaultdict(list)
        for e in expected:
            pool[ev_key(e)].append(e)
        loose = Counter(ev_key(e, False) for e in expected)
        unmatched = []
        for e in got:
            lst = pool.get(ev_key(e))
            if lst:
                x = lst.pop(0)
                c["matched"] += 1
                if not f.get("duplicate_of") and "_row" in x:
                    got_by_row[x["_row"]].append(e)
            else:
                unmatched.append(e)
            if loose[ev_key(e, False)] > 0:
                loose[ev_key(e, False)] -= 1
                c["key_matched"] += 1
        missing = [x for lst in pool.values() for x in lst]
        if not f.get("duplicate_of"):
            for e in expected:
                if "_row" in e:
                    by_row[e["_row"]].append(e)
        file_results[f["path"]] = (len(expected), len(got), missing, unmatched)
        if d is not None and len(got) == 0 and len(expected) > 0:
            c["silent_files"] += 1
    silent_formats = sorted(fmt for fmt, c in per_format.items()
                            if c["got"] == 0 and c["expected"] > 0)
    for fmt in silent_formats:
        msg = ("format %s: the parser printed no event for any of %d files (placeholder?); its "
               "files are checked against expected/ only" % (fmt, per_format[fmt]["files"]))
        (problems if args.strict else notes).append(msg)
    for path, (ne, ng, missing, unmatched) in sorted(file_results.items()):
        fmt = next(f["format"] for _, f in entries if f["path"] == path)
        if fmt in silent_formats:
            continue
        if missing or unmatched:
            problems.append("%s: %d expected, %d printed, %d missing e.g. %s; %d unexpected e.g. %s"
                            % (path, ne, ng, len(missing),
                               json.dumps(missing[0]) if missing else "-", len(unmatched),
                               json.dumps(unmatched[0]) if unmatched else "-"))
    # enrollments: device events, and truth's status from the events
    plat_of_fmt = {"android_omadm": "android", "ios_console": "ios",
                   "windows_event_xml": "windows"}
    silent_platforms = {plat_of_fmt[f] for f in silent_formats if f in plat_of_fmt}
    status_bad = 0
    self_bad = 0
    for i, row in enumerate(truth, 1):
        exp = by_row.get(i, [])
        got = got_by_row.get(i, [])
        plat = row["platform"]
        s_exp = derive_status(plat, exp)
        if s_exp != row["status"]:
            self_bad += 1
            if self_bad <= 5:
                problems.append("truth row %d (%s %s): status %s, but the expected events say %s"
                                % (i, row["device"] or "CA", row["profile"], row["status"],
                                   s_exp))
        if row["device"]:
            ndev = sum(1 for e in exp if e["platform"] in DEVICE_PLATFORMS)
            if ndev < 1:
                problems.append("truth row %d: no device-side expected events" % i)
            if plat in silent_platforms:
                continue
            gdev = [e for e in got if e["platform"] in DEVICE_PLATFORMS]
            if not gdev:
                problems.append("truth row %d (%s): the parser gave no device event" %
                                (i, row["device"]))
                continue
            server = [e for e in exp if e["platform"] == "ca"]
            s_got = derive_status(plat, gdev + server)
            if s_got != row["status"]:
                status_bad += 1
                if status_bad <= 5:
                    problems.append("truth row %d (%s): status %s, from the parsed events %s"
                                    % (i, row["device"], row["status"], s_got))
    # report
    print("fleetgen check: %s (%d devices, %d truth rows)" % (root, len(man["devices"]),
                                                               len(truth)))
    for fmt in sorted(per_format):
        c = per_format[fmt]
        print("  %-18s files %4d  expected %6d  printed %6d  matched %6d  key-matched %6d"
              % (fmt, c["files"], c["expected"], c["got"], c["matched"], c["key_matched"]))
    st = Counter(r["status"] for r in truth)
    print("  truth: " + ", ".join("%s %d" % (k, st[k]) for k in sorted(st)))
    for n in notes:
        print("  note: " + n)
    for p in problems[:40]:
        print("  FAIL: " + p)
    if len(problems) > 40:
        print("  ... %d more" % (len(problems) - 40))
    print("fleetgen check: %s" % ("ok" if not problems else "%d problems" % len(problems)))
    return 0 if not problems else 1


# ---------------------------------------------------------------- describe

def describe_outcomes():
    return """\
What each outcome looks like (device side / NDES IIS / CA), per platform:

installed          Android: Trying to enroll, GetCACert/GetCACaps 200, PKCS_REQ (txn), CertRep
                   SUCCESS, CERT_ENROLLED->INSTALL_REQUESTED, (user, 20 s-25 min) ->INSTALLING
                   ->ACCESS_REQUESTED, (5 s-10 min) ->ACCESS_GRANTED (installed_at).
                   iOS: GetCACert, Adding dependent (profile), GetCACaps, Sending CSR, PKIOperation,
                   Issued certificate received, Adding dependent Microsoft.Profiles.MDM,
                   Profile "www.windowsintune.com.SCEP..." installed. (installed_at).
                   Windows: 306, GetCACaps/GetCACert at IIS, 36, 309 0x1 with the thumbprint
                   (installed_at), 39.
                   IIS: GetCACert, GetCACaps, VerifyRequest 201, Notify 204, PKIOperation 200.
                   CA: 4886, 4887 v1 (serial), certutil 20 (or 21 if renewed and revoked).
                   15% (via_pending): CA 4889 first, issued 2-25 min later (1.5-5.5 on iOS);
                   the device polls (Android GET_CERT_INITIAL every 5 min, iOS every 60 s,
                   Windows 309 0x2 once) and gets SUCCESS at the first poll after issuance.
waiting_user_install / waiting_user_access (Android only)
                   as installed, stopping after CERT_INSTALL_REQUESTED (sometimes a later
                   REQUESTED->REQUESTED reminder) / after CERT_ACCESS_REQUESTED.
failed             kinds (--fail-mix): badRequest (VerifyRequest 403.16, no CA record),
                   badMessageCheck/badAlg/badTime (PKIOperation 200, no VerifyRequest, no CA),
                   badCertId (CA pending, polls, admin denies: 4888 + certutil 31 0x80094014,
                   last poll FAILURE badCertId), ca_denied (4886+4888, certutil 31 0x80094012;
                   Android failInfo=badRequest), install_failed (CA issued; Android
                   CERT_INSTALL_FAILED, Windows 309 0x10; iOS uses ca_denied instead),
                   http_error (PKIOperation 500, no CA; on Android/iOS half at GetCACert 500
                   win32 1346), cacert_mismatch (Windows 307 + 32 0x80091007, no PKIOperation).
                   iOS shows every CertRep FAILURE as MCSCEPErrorDomain 22013, HTTP 500 as 22005;
                   Windows logs event 32 with an HRESULT per kind.
pending            CA 4889 and certutil 9; the device's answers are PENDING until its log ends
                   (Android 1-8 polls, iOS 2-8, Windows a single 309 0x2).
issued_not_delivered
                   lost: the device sent its request and logged nothing after it; IIS logs the
                   PKIOperation 200 with win32 64 (client gone), the CA issues at once.
                   gaveup: CA pending, the device polls 0-2 times and stops; the CA issues
                   5-45 min after the last poll.
requested_not_issued
                   the device sent its request (Android: maybe a network-down line); nothing
                   reached NDES: IIS has GetCACert/GetCACaps only; no CA record.
orphan_issuance    an issuance for a device with no logs: full IIS + CA traces, issued; plus
                   --other-issuances WebServer certificates requested by CONTOSO\\pkiadmin.
Retries (same device and profile, 20-120 min after a failure) and renewals (2-6 weeks after an
install; the old certificate is revoked in half of them) are enrollments of their own.

Link keys: Windows 309 thumbprint = certutil Certificate Hash = SHA-1 of the certificate
(--binary-cert adds the PEM).  Android txn = SHA-1 of the request's SubjectPublicKeyInfo, which
is the certificate's, so it can be recomputed from the Binary Certificate column.  iOS: time
window (and profile, on the device side only).  4887 v1 and certutil share the serial and the
request id.  Device clocks are skewed by up to --max-skew-ms.
"""


# ---------------------------------------------------------------- main

def parse_kv(s, allowed):
    out = {}
    if not s:
        return out
    for part in s.split(","):
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        k = k.strip()
        if k == "orphan_issuance":
            k = "orphan"
        if k not in allowed:
            raise argparse.ArgumentTypeError("unknown key %r (known: %s)" %
                                             (k, ", ".join(sorted(allowed))))
        out[k] = float(v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--devices", type=int, default=30)
    ap.add_argument("--out", help="fleet directory, or the OMADM file with --omadm-lines")
    ap.add_argument("--start", default="2024-03-14T08:00:00Z")
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--mix", type=lambda s: parse_kv(s, DEFAULT_MIX), default={},
                    help="status shares (installed, waiting_user_install, waiting_user_access, "
                    "failed, pending, issued_not_delivered, requested_not_issued; waiting_* "
                    "apply to Android only) and orphan, retry, renewal, via_pending")
    ap.add_argument("--fail-mix", type=lambda s: parse_kv(s, DEFAULT_FAIL_MIX), default={},
                    help="weights of the failure kinds: " + ", ".join(FAIL_KINDS))
    ap.add_argument("--noise-ratio", type=float, default=0.8,
                    help="share of device-log lines that are not SCEP lines")
    ap.add_argument("--duplicates", type=float, default=0.05,
                    help="probability that a device's bundle is shipped twice")
    ap.add_argument("--burst", type=float, default=0.3,
                    help="share of devices that check in within 3 min of one of 3 wave times")
    ap.add_argument("--max-skew-ms", type=int, default=2000)
    ap.add_argument("--other-issuances", type=int, default=2,
                    help="non-SCEP (WebServer) issuances at the CA; orphan_issuance in truth")
    ap.add_argument("--binary-cert", action="store_true",
                    help="certutil CSV gets a Binary Certificate column (PEM)")
    ap.add_argument("--no-expected", action="store_true", help="do not write expected/")
    ap.add_argument("--like", metavar="DIR",
                    help="generate with the arguments recorded in DIR/manifest.json")
    ap.add_argument("--omadm-lines", type=int, help="scale mode: lines of one OMADM.log")
    ap.add_argument("--scep-ratio", type=float, default=0.2)
    ap.add_argument("--bench-enrollments", type=int,
                    help="bench mode: this many Android enrollments over a year-like span")
    ap.add_argument("--check", metavar="DIR", help="check mode: parse DIR with --agent")
    ap.add_argument("--agent", default="build/bin/scepwatch-agent")
    ap.add_argument("--auto", action="store_true",
                    help="check: also parse every file with --format auto and compare")
    ap.add_argument("--strict", action="store_true",
                    help="check: a format whose parser prints nothing is a failure")
    ap.add_argument("--describe", action="store_true", help="print what each outcome looks like")
    if argv is None:
        argv = sys.argv[1:]
    a = ap.parse_args(argv)
    if a.like:
        # the generation arguments of an existing fleet, with this --out
        like = json.load(open(os.path.join(a.like, "manifest.json")))["argv"]
        argv = like + ["--out", a.out]
        a = ap.parse_args(argv)
    a.argv = []
    skip = False
    for x in argv:                     # what made this fleet, minus where it went
        if skip:
            skip = False
        elif x == "--out":
            skip = True
        elif not x.startswith("--out="):
            a.argv.append(x)
    if a.describe:
        print(describe_outcomes(), end="")
        return 0
    if a.check:
        return check(a)
    if not a.out:
        ap.error("--out is required")
    if a.bench_enrollments is not None:
        if a.bench_enrollments < 1:
            ap.error("--bench-enrollments must be >= 1")
        bench_fleet(a)
        return 0
    if a.omadm_lines is not None:
        if not 0 <= a.scep_ratio <= 1:
            ap.error("--scep-ratio must be in [0, 1]")
        scale(a)
        return 0
    if a.devices < 1 or not 0 <= a.noise_ratio < 1 or a.hours <= 0:
        ap.error("need --devices >= 1, 0 <= --noise-ratio < 1, --hours > 0")
    g = Fleet(a)
    g.simulate()
    g.add_noise()
    g.finish_ca()
    g.make_truth()
    files = g.render(a.out)
    st = Counter(row[3] for row in g.truth)
    print("fleetgen: %d devices, %d enrollments, %d CA requests, %d files -> %s; %s; %s"
          % (a.devices, len(g.enrollments), len(g.cas), len(files), a.out,
             ", ".join("%s %d" % (k, st[k]) for k in sorted(st)),
             json.dumps(g.stats())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
