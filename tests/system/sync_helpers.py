"""Shared pieces of the Customer.io delivery tests (test_sync_*.py): a simulator fixture,
a service wired to it with short lease/probe times, and small views of what arrived.

Every wait here is a deadline (wait_for), never a fixed sleep: the machine is small and
shared, so the deadlines are generous and the tests end as soon as the condition holds."""
import base64
import json
import time
import urllib.parse

import pytest

from cio_sim import CioSim
from harness import PARTITIONS, partition, wait_for
from isolation import redis  # noqa: F401 (re-exported fixture)
from payloads import contact_created, contact_tag, conversation, ticket

SITE, KEY = "site-sync-1", "key-sync-1"
ULID = r"^[0-9A-HJKMNP-TV-Z]{26}$"


@pytest.fixture
def sim():
    s = CioSim(site_id=SITE, api_key=KEY).start()
    yield s
    s.stop()


def cio_env(sim, **extra):
    """Environment of a service that sends to `sim` (v2 batch unless CIO_API says v1)."""
    env = {"CIO_SITE_ID": SITE, "CIO_API_KEY": KEY, "CIO_TRACK_URL": sim.url,
           "SUPPRESS_SYNC_LEASE_MS": "3000", "SUPPRESS_SYNC_PROBE_MS": "300",
           "CIO_TIMEOUT_MS": "5000"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def basic_auth(site=SITE, key=KEY):
    return "Basic " + base64.b64encode(f"{site}:{key}".encode()).decode()


def post_ok(svc, doc):
    r = svc.webhook(doc)
    assert r.status == 200, (doc.get("topic"), r)
    return r


def same_partition_ids(prefix, n, start=0):
    """n user ids sharing one partition (so one lease takes them together)."""
    by_part = {}
    i = start
    while True:
        uid = f"{prefix}{i}"
        ids = by_part.setdefault(partition(uid), [])
        ids.append(uid)
        if len(ids) == n:
            return ids
        i += 1


# --------------------------------------------------------------------------- Intercom story

def open_conversation(user, conv_id, at, contact=None, priority=None, topic=None):
    return conversation(topic=topic or "conversation.user.created", conv_id=conv_id,
                        users=[(contact or "c-" + user, user)], state="open",
                        created_at=at, updated_at=at, priority=priority, event_at=at)


def close_conversation(user, conv_id, opened, at, contact=None, rating=None):
    return conversation(topic="conversation.rating.added" if rating else
                        "conversation.admin.closed", conv_id=conv_id,
                        users=[(contact or "c-" + user, user)], state="closed",
                        created_at=opened, updated_at=at, rating=rating, event_at=at)


def churn_tag(user, at, contact=None, tag="churn-risk"):
    return contact_tag(contact_id=contact or "c-" + user, external_id=user, tag=tag,
                       event_at=at)


def open_ticket(user, ticket_id, at, contact=None):
    return ticket(topic="ticket.created", ticket_id=ticket_id,
                  users=[(contact or "c-" + user, user)], category="submitted",
                  created_at=at, updated_at=at)


def new_contact(user, at, contact=None, custom=None):
    doc = contact_created(contact_id=contact or "c-" + user, external_id=user, event_at=at)
    if custom is not None:
        doc["data"]["item"]["custom_attributes"] = dict(custom)
    return doc


# --------------------------------------------------------------------------- views

def identifies_of(sim, user):
    with sim._lock:
        return [dict(a) for i, a, _ in sim.identifies if i == user]


def api_requests(sim):
    """Requests that reached the Track API (not the probe), oldest first."""
    with sim._lock:
        return [r for r in sim.requests if not r["path"].startswith("/api/v1/accounts")]


def sent_event_ids(sim):
    """Every event id the service put on the wire, with every attempt, from the raw
    request bodies (faulted and dropped ones too): {(user, name, ticket/tag key): {ids}}."""
    out = {}
    with sim._lock:
        reqs = list(sim.requests)
    for r in reqs:
        try:
            body = json.loads(r["body"]) if r["body"] else None
        except ValueError:
            continue
        path = r["path"].split("?", 1)[0]
        ops = []
        if path == "/api/v2/batch" and isinstance(body, dict):
            for op in body.get("batch", []):
                if op.get("action") == "event":
                    ops.append((op["identifiers"]["id"], op["name"], op.get("attributes") or {},
                                op["id"]))
        elif path.endswith("/events") and isinstance(body, dict):
            user = urllib.parse.unquote(path.split("/")[4])
            ops.append((user, body["name"], body.get("data") or {}, body["id"]))
        for user, name, data, eid in ops:
            key = (user, name, str(data.get("ticket_id") or data.get("tag_name") or ""))
            out.setdefault(key, set()).add(eid)
    return out


def queue_depth(redis):
    n = 0
    for p in range(PARTITIONS):
        n += redis.cmd("ZCARD", f"sd:{{p{p}}}:q")
    return n


def pending_event_lists(redis):
    return redis.cmd("KEYS", "sd:*:e:*")


def drained(redis):
    return queue_depth(redis) == 0 and not pending_event_lists(redis)


def wait_drained(redis, timeout=30, what="the Customer.io queue to drain"):
    wait_for(lambda: drained(redis), timeout=timeout, interval=0.05, what=what)


def admin(svc, method, path, body=None):
    r = svc.request(method, "/v1/admin/" + path, body=body)
    return r


def dead_letters(svc, limit=500):
    r = admin(svc, "GET", f"dead-letters?limit={limit}")
    assert r.status == 200, r
    return r.json()["items"]


def readiness(svc):
    r = svc.get("/readyz")
    assert r.status == 200, r
    return r.json()["checks"]["customerio"]


def metric(svc, name, labels=None):
    """The value of one sample of /metrics (0 when absent)."""
    text = svc.get("/metrics").body.decode()
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != name:
            continue
        if labels and not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    return total if found else 0.0


def now():
    return int(time.time())


def pause_delivery(sim, svc, warm_user="u-sync-warm"):
    """Makes `svc` pause on a 401 (the simulator's key rotated): while paused it leases
    nothing, so everything queued meanwhile goes out together once resumed."""
    sim.set_credentials(SITE, "rotated-key")
    post_ok(svc, open_conversation(warm_user, "889999999999999", now() - 60))
    wait_for(lambda: readiness(svc).startswith("unauthorized"), timeout=20,
             what="delivery paused on 401")


def resume_delivery(sim):
    sim.set_credentials(SITE, KEY)
