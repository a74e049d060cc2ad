#!/usr/bin/env python3
"""Signs and posts Intercom notifications to a running suppressd.

usage: replay.py [--url http://127.0.0.1:8080] [--secret demo-secret] FILE...
Prints one line per file and exits non-zero if any answer was not 200."""
import argparse
import hashlib
import hmac
import sys
import urllib.error
import urllib.request


def post(url, secret, body):
    sig = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    req = urllib.request.Request(url + "/webhooks/intercom", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Hub-Signature": sig,
        "User-Agent": "intercom-parrot-service-client/1.0"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--secret", default="demo-secret")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    bad = 0
    for f in a.files:
        with open(f, "rb") as fh:
            status, body = post(a.url, a.secret, fh.read())
        print(f"{status} {f} {body.strip()}")
        bad += status != 200
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
