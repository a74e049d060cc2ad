#!/usr/bin/env python3
"""`make demo`: replays a realistic support story into a running `make run` service and
prints what suppressd concluded.

The deliveries are the project's fixtures (tests/fixtures/intercom/, real Intercom
shapes), signed with the demo secret. Their January 2026 timestamps are moved so the
story ends a minute ago (the rules' 7/14/30-day windows are measured against now), and
each run gets fresh notification ids.

usage: demo.py [--url http://127.0.0.1:8080] [--secret demo-secret]"""
import argparse
import copy
import datetime
import json
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from replay import post  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "intercom"
STORY_END = 1768200000           # the fixtures' timeline ends before this
ISO = re.compile(r"^(2026-01-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")

STORY = [
    ("Ada (u-1001) signs up", "contact_user_created"),
    ("Ada opens a conversation about failing exports", "conversation_user_created"),
    ("Ada also gets a ticket for it: two concurrent tickets", "ticket_created"),
    ("Support marks the conversation priority", "conversation_priority_updated"),
    ("Account manager tags Ada churn-risk", "contact_user_tag_created"),
    ("Support closes the conversation (the ticket is still open)", "conversation_admin_closed"),
    ("Ada rates the conversation 2/5", "conversation_rating_added"),
    ("The ticket is closed; Intercom names only Ada's contact id", "ticket_closed"),
    ("Tomas (u-1002) writes in (API 1.x app)", "conversation_user_created.v1"),
    ("Support snoozes Tomas's conversation: snoozed still counts as open", "conversation_admin_snoozed.v1"),
    ("Intercom retries that same notification: a duplicate, nothing changes", "conversation_admin_snoozed.v1"),
]


def shift(value, delta):
    if isinstance(value, dict):
        return {k: shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [shift(v, delta) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 1767000000 <= value <= 1769000000:
        return value + delta
    if isinstance(value, str):
        m = ISO.match(value)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
            t = t.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=delta)
            return t.strftime("%Y-%m-%dT%H:%M:%S") + (m.group(2) or "") + "Z"
    return value


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--secret", default="demo-secret")
    a = ap.parse_args()
    try:
        status, ready = get(a.url + "/readyz")
    except OSError as e:
        print(f"demo: no suppressd at {a.url} ({e}). Start it first: make run", file=sys.stderr)
        return 1
    if status != 200:
        print(f"demo: suppressd is not ready: {ready}", file=sys.stderr)
        return 1

    delta = int(time.time()) - 60 - STORY_END
    print(f"Replaying {len(STORY)} signed Intercom deliveries into {a.url}\n")
    last_id = {}
    for text, name in STORY:
        doc = json.loads((FIXTURES / f"{name}.json").read_text())
        doc = shift(doc, delta)
        # A retry carries the same notification id; everything else is new this run.
        doc["id"] = last_id[name] if name in last_id else f"notif_{uuid.uuid4()}"
        last_id[name] = doc["id"]
        status, body = post(a.url, a.secret, json.dumps(doc).encode())
        outcome = json.loads(body).get("status", body.strip()) if body else ""
        print(f"  {status} {outcome:<10} {doc['topic']:<32} {text}")
        if status != 200:
            print(f"demo: unexpected answer: {body}", file=sys.stderr)
            return 1

    print("\nResulting user states (GET /v1/users/{id}):\n")
    for uid in ("u-1001", "u-1002"):
        _, u = get(a.url + "/v1/users/" + urllib.parse.quote(uid, safe=""))
        print(json.dumps(u, indent=2))
        print()
    print("Suppression verdicts (POST /v1/suppression/check):\n")
    for campaign in u["suppressed"]:
        req = urllib.request.Request(
            a.url + "/v1/suppression/check", method="POST",
            data=json.dumps({"campaign": campaign, "user_ids": ["u-1001", "u-1002", "u-new"]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            res = json.loads(r.read())["results"]
        cells = ", ".join(f"{x['user_id']}: {'SUPPRESSED ' + '+'.join(x['reasons']) if x['suppressed'] else 'send'}"
                          for x in res)
        print(f"  {campaign:<17} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
