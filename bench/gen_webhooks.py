#!/usr/bin/env python3
"""Writes pre-signed Intercom webhook requests for wrk (bench/wrk/webhooks.lua).

usage: gen_webhooks.py OUT N [--secret S] [--users U]
Each line of OUT is "<signature>\\t<json body>": mixed topics over U users (ticket opens
and closes in pairs, priority changes, ratings, churn tags), all with distinct ids."""
import argparse
import hashlib
import hmac
import json
import pathlib
import random
import time
import uuid

FIX = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "intercom"


def load(name):
    return json.loads((FIX / f"{name}.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--users", type=int, default=100000)
    a = ap.parse_args()
    rnd = random.Random(42)
    conv = load("conversation_admin_replied")
    tag = load("contact_user_tag_created")
    now = int(time.time())
    with open(a.out, "w") as out:
        for i in range(a.n):
            u = rnd.randrange(a.users)
            kind = i % 10
            if kind < 8:
                d = json.loads(json.dumps(conv))
                item = d["data"]["item"]
                ticket = f"9{u:07d}{(i // 20) % 5}"
                closed = kind in (3, 7)
                item["id"] = ticket
                item["state"] = "closed" if closed else "open"
                item["open"] = not closed
                item["created_at"] = now - 3600
                item["updated_at"] = now - 3600 + i
                item["priority"] = "priority" if kind == 5 else "not_priority"
                item["contacts"]["contacts"] = [{"type": "contact", "id": f"c{u}", "external_id": f"user-{u}"}]
                if kind == 6:
                    item["conversation_rating"] = {"rating": 1 + u % 5, "remark": None, "created_at": now - 60,
                                                   "updated_at": now - 60,
                                                   "contact": {"type": "contact", "id": f"c{u}", "external_id": f"user-{u}"}}
                d["topic"] = "conversation.admin.closed" if closed else "conversation.admin.replied"
            else:
                d = json.loads(json.dumps(tag))
                d["data"]["item"]["contact"]["id"] = f"c{u}"
                d["data"]["item"]["contact"]["external_id"] = f"user-{u}"
            d["id"] = f"notif_{uuid.UUID(int=rnd.getrandbits(128))}"
            d["created_at"] = now - 3600 + i
            body = json.dumps(d, separators=(",", ":"))
            sig = "sha1=" + hmac.new(a.secret.encode(), body.encode(), hashlib.sha1).hexdigest()
            out.write(f"{sig}\t{body}\n")


if __name__ == "__main__":
    main()
