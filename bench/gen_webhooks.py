#!/usr/bin/env python3
"""Writes pre-signed Intercom webhook requests for wrk (bench/wrk/webhooks.lua).

usage: gen_webhooks.py OUT N [--secret S] [--users U] [--mode mixed|seed] [--seed R]

Each line of OUT is "<signature>\\t<json body>", the body a real-shaped Intercom
notification built from tests/fixtures/intercom/ (2.5 to 3.6 kB, like Intercom's), every
one with its own notification id.

  --mode seed   N users user-0 .. user-<N-1>, one conversation.user.created each: every
                user ends with exactly one open ticket (for memory per user and the sync
                drain).
  --mode mixed  (default) N notifications over U users, as support desks produce them:
                conversations opened, replied to, prioritised, snoozed and closed (open/close
                pairs: a user with an open conversation gets it closed later in the file),
                ratings after a close (a third of them 2 or less), and contact tags (a
                quarter of them churn-risk). Timestamps lie in the last three days, so every
                rule window is live. With --seeded S, users below S start with the
                conversation --mode seed opened for them.

Bodies are filled into templates (not rebuilt as JSON each time), so a million lines take
seconds."""
import argparse
import hashlib
import hmac
import json
import pathlib
import random
import re
import time

FIX = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "intercom"


def load(name):
    return json.loads((FIX / f"{name}.json").read_text())


def template(doc):
    """Compact JSON of doc with "@@name@@" strings turned into format fields. A field that
    is the whole JSON string ("@@n_x@@" for numbers, "@@j_x@@" for raw JSON) loses its
    quotes; others stay inside their string."""
    s = json.dumps(doc, separators=(",", ":"))
    s = s.replace("{", "{{").replace("}", "}}")
    s = re.sub(r'"@@([nj]_\w+)@@"', r"{\1}", s)
    return re.sub(r"@@(\w+)@@", r"{\1}", s)


def conversation(fixture, topic, state, priority):
    d = load(fixture)
    d["topic"] = topic
    d["id"] = "@@nid@@"
    d["created_at"] = "@@n_at@@"
    d["first_sent_at"] = "@@n_at@@"
    it = d["data"]["item"]
    it["id"] = "@@tid@@"
    it["created_at"] = "@@n_opened@@"
    it["updated_at"] = "@@n_at@@"
    it["state"] = state
    it["open"] = state != "closed"
    it["priority"] = priority
    it["contacts"]["contacts"] = [{"type": "contact", "id": "@@cid@@", "external_id": "@@uid@@"}]
    src = it.get("source") or {}
    if isinstance(src.get("author"), dict) and src["author"].get("type") == "user":
        src["author"]["id"] = "@@cid@@"
    if it.get("conversation_rating") is not None:
        it["conversation_rating"] = {
            "rating": "@@n_score@@", "remark": None, "created_at": "@@n_at@@",
            "updated_at": "@@n_at@@",
            "contact": {"type": "contact", "id": "@@cid@@", "external_id": "@@uid@@"},
            "teammate": {"type": "admin", "id": "7401122"}}
    return template(d)


def contact_tag():
    d = load("contact_user_tag_created")
    d["id"] = "@@nid@@"
    d["created_at"] = "@@n_at@@"
    d["first_sent_at"] = "@@n_at@@"
    it = d["data"]["item"]
    it["tag"]["name"] = "@@tag@@"
    it["contact"]["id"] = "@@cid@@"
    it["contact"]["external_id"] = "@@uid@@"
    return template(d)


T = {
    "open": conversation("conversation_user_created", "conversation.user.created", "open",
                         "not_priority"),
    "reply": conversation("conversation_admin_replied", "conversation.admin.replied", "open",
                          "not_priority"),
    "priority": conversation("conversation_priority_updated", "conversation.priority.updated",
                             "open", "priority"),
    "snooze": conversation("conversation_admin_snoozed", "conversation.admin.snoozed",
                           "snoozed", "not_priority"),
    "close": conversation("conversation_admin_closed", "conversation.admin.closed", "closed",
                          "not_priority"),
    "rating": conversation("conversation_rating_added", "conversation.rating.added", "closed",
                           "not_priority"),
    "tag": contact_tag(),
}


class Writer:
    def __init__(self, out, secret, rnd):
        self.out = out
        self.key = secret.encode()
        self.rnd = rnd
        self.n = 0

    def write(self, kind, **fields):
        self.n += 1
        fields.setdefault("nid", "notif_bench_%016x" % self.rnd.getrandbits(64))
        body = T[kind].format(**fields)
        sig = hmac.new(self.key, body.encode(), hashlib.sha1).hexdigest()
        self.out.write(f"sha1={sig}\t{body}\n")


def cid(u):
    """An Intercom contact id of the real shape (24 hex digits, like a MongoDB ObjectId)."""
    return f"{0x65f0a1b2c3d4e5f600000000 + u:024x}"


def seed(w, n, now):
    # One open conversation per user, opened within the last day.
    for u in range(n):
        at = now - 86400 + (u * 86400) // max(n, 1)
        w.write("open", tid=f"7{u:09d}", uid=f"user-{u}", cid=cid(u), n_at=at, n_opened=at)


def mixed(w, n, users, now, rnd, seeded=0):
    base = now - 3 * 86400
    step = max(1, (3 * 86400 - 600) // max(n, 1))
    # Open conversations: (user, ticket id, opened_at). A user may hold several at once.
    # --seeded S: users 0..S-1 start with the one --mode seed opened.
    active = [(u, f"7{u:09d}", now - 86400 + (u * 86400) // max(seeded, 1))
              for u in range(min(seeded, users))]
    seq = 0
    for i in range(n):
        at = base + i * step
        r = rnd.random()
        if r < 0.10:
            u = rnd.randrange(users)
            w.write("tag", uid=f"user-{u}", cid=cid(u), n_at=at,
                    tag="churn-risk" if rnd.random() < 0.25 else rnd.choice(
                        ("vip", "beta-tester", "billing", "enterprise")))
            continue
        if len(active) < 1000 or r < 0.40:
            u = rnd.randrange(users)
            seq += 1
            tid = f"8{seq:09d}"
            active.append((u, tid, at))
            w.write("open", tid=tid, uid=f"user-{u}", cid=cid(u), n_at=at, n_opened=at)
            continue
        k = rnd.randrange(len(active))
        u, tid, opened = active[k]
        f = dict(tid=tid, uid=f"user-{u}", cid=cid(u), n_at=at, n_opened=opened)
        r = rnd.random()
        if r < 0.20:
            w.write("reply", **f)
        elif r < 0.30:
            w.write("priority", **f)
        elif r < 0.35:
            w.write("snooze", **f)
        else:
            active[k] = active[-1]
            active.pop()
            if r < 0.85:
                w.write("close", **f)
            else:
                w.write("rating", n_score=rnd.choice((1, 2, 3, 4, 5, 5)), **f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--mode", choices=("mixed", "seed"), default="mixed")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--seeded", type=int, default=0,
                    help="mixed: users 0..S-1 already hold the open conversation that "
                         "--mode seed gave them (closes and replies may name it)")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    now = int(time.time())
    with open(a.out, "w", buffering=1 << 20) as out:
        w = Writer(out, a.secret, rnd)
        if a.mode == "seed":
            seed(w, a.n, now)
        else:
            mixed(w, a.n, a.users, now, rnd, a.seeded)


if __name__ == "__main__":
    main()
