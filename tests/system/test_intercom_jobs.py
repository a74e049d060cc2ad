"""Customer.io -> Intercom, contact look-ups, backfill and reconciliation, against the real
binary, a real Redis and the Intercom REST simulator (intercom_sim.py).

What users rely on: a Customer.io reporting webhook becomes exactly one Intercom event
with the right fields, whatever the webhook's retries and Intercom's answers; a contact
Intercom names only by id ends up on the right user; the service is right on the day it
is installed (backfill) and cannot keep a user suppressed forever because one close
webhook was lost (reconciliation)."""
import hashlib
import hmac
import json
import signal
import subprocess
import time

import pytest

from harness import BIN, wait_for
from intercom_sim import IntercomSim
from payloads import conversation, ticket, ticket_closed_contact_only
# A Redis of this module's own: the session service runs an Intercom worker on the
# shared one and would take these tests' jobs.
from sync_helpers import redis  # noqa: F401 (fixture)

TOKEN = "ic-token-1"
CIO_KEY = "cio-webhook-key"


@pytest.fixture
def isim():
    s = IntercomSim(token=TOKEN).start()
    yield s
    s.stop()


def ic_env(isim, **extra):
    env = {"INTERCOM_ACCESS_TOKEN": TOKEN, "INTERCOM_API_URL": isim.url,
           "CIO_WEBHOOK_SIGNING_KEY": CIO_KEY, "INTERCOM_VERSION": "2.14",
           "SUPPRESS_SYNC_LEASE_MS": "3000", "SUPPRESS_SYNC_PROBE_MS": "300",
           "INTERCOM_TIMEOUT_MS": "5000"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cio_event(event_id="01E4C4CT6YDC7Y5M7FE1GWWPQJ", metric="opened", user="42",
              timestamp=1613063089, object_type="email"):
    """Customer.io's schema-derived `email_opened` example, with the fields a test varies."""
    return {"event_id": event_id, "object_type": object_type, "metric": metric,
            "timestamp": timestamp,
            "data": {"campaign_id": 7, "action_id": 42,
                     "journey_id": "01GW20GXAAXBKZD8J96M8FNV3R", "customer_id": user,
                     "delivery_id": "RPIyMTM6OjEyMzQ=",
                     "identifiers": {"id": user, "email": "test@example.com",
                                     "cio_id": "d9c106000001"},
                     "recipient": "test@example.com", "subject": "Your ticket was resolved",
                     "proxied": False, "prefetched": False, "synthetic": False}}


def post_cio(svc, doc, key=CIO_KEY, ts=None, sig=None):
    body = json.dumps(doc).encode()
    ts = str(int(time.time()) if ts is None else ts)
    if sig is None:
        sig = hmac.new(key.encode(), b"v0:" + ts.encode() + b":" + body,
                       hashlib.sha256).hexdigest()
    return svc.request("POST", "/webhooks/customerio", body,
                       {"Content-Type": "application/json", "X-CIO-Timestamp": ts,
                        "X-CIO-Signature": sig})


def dead_letters(svc):
    r = svc.get("/v1/admin/dead-letters?destination=intercom")
    assert r.status == 200, r
    return r.json()["items"]


# ----------------------------------------------------------------- Customer.io -> Intercom

def test_opened_webhook_becomes_one_intercom_event(make_service, isim):
    isim.add_contact("c-42", external_id="42", email="test@example.com")
    svc = make_service(env=ic_env(isim))
    r = post_cio(svc, cio_event())
    assert r.status == 200 and r.json() == {"status": "queued"}, r
    wait_for(lambda: len(isim.events) == 1, timeout=15, what="the event at Intercom")
    ev = isim.events[0]
    assert ev["event_name"] == "cio_email_opened"
    assert ev["created_at"] == 1613063089
    assert ev["user_id"] == "42" and ev["contact_id"] == "c-42"
    assert ev["metadata"] == {"campaign_id": 7, "action_id": 42,
                              "delivery_id": "RPIyMTM6OjEyMzQ=",
                              "subject": "Your ticket was resolved",
                              "recipient": "test@example.com",
                              "journey_id": "01GW20GXAAXBKZD8J96M8FNV3R"}
    req = [q for q in isim.requests if q["path"] == "/events"][0]
    assert req["headers"].get("authorization") == f"Bearer {TOKEN}"
    assert req["intercom_version"] == "2.14"
    # the job is gone once Intercom said 202
    q = svc.get("/v1/admin/queue?destination=intercom").json()
    assert q["destinations"]["intercom"]["depth"] == 0


def test_bad_signature_is_401_and_queues_nothing(make_service, isim, redis):
    isim.add_contact("c-42", external_id="42")
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event(), key="wrong-key").status == 401
    assert post_cio(svc, cio_event(), sig="00" * 32).status == 401
    r = svc.request("POST", "/webhooks/customerio", json.dumps(cio_event()).encode(),
                    {"Content-Type": "application/json"})
    assert r.status == 401
    assert [k for k in redis.cmd("KEYS", "sd:*") if b":iq" in k or b":cw:" in k] == []
    time.sleep(0.5)
    assert isim.events == []


def test_stale_timestamp_rejected_only_when_configured(make_service, isim):
    isim.add_contact("c-42", external_id="42")
    old = int(time.time()) - 3600
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event(event_id="ev-old-1"), ts=old).status == 200
    strict = make_service(env=ic_env(isim, CIO_WEBHOOK_MAX_AGE=300))
    r = post_cio(strict, cio_event(event_id="ev-old-2"), ts=old)
    assert r.status == 401 and r.json()["error"] == "stale_timestamp"
    assert post_cio(strict, cio_event(event_id="ev-new-2")).status == 200


def test_duplicate_event_id_gives_one_event(make_service, isim):
    isim.add_contact("c-42", external_id="42")
    svc = make_service(env=ic_env(isim))
    statuses = [post_cio(svc, cio_event()).json()["status"] for _ in range(5)]
    assert statuses == ["queued"] + ["duplicate"] * 4
    wait_for(lambda: len(isim.events) == 1, timeout=15, what="the event")
    time.sleep(1.0)
    assert len(isim.events) == 1
    assert isim.event_duplicates == 0  # not even a repeat reached Intercom


def test_unforwarded_metric_and_malformed_body(make_service, isim):
    svc = make_service(env=ic_env(isim))
    r = post_cio(svc, cio_event(object_type="sms", metric="sent"))
    assert r.status == 200 and r.json()["status"] == "ignored", r
    r = post_cio(svc, {"event_id": "x", "metric": "opened"})
    assert r.status == 400 and r.json()["error"] == "invalid_event", r
    time.sleep(0.5)
    assert isim.events == []


def test_intercom_429_waits_for_reset_then_delivers(make_service, isim):
    isim.add_contact("c-42", external_id="42")
    reset = int(time.time()) + 2
    isim.fail_next(1, status=429, path_prefix="/events",
                   headers={"X-RateLimit-Limit": "166", "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset": str(reset)})
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event()).status == 200
    wait_for(lambda: len(isim.events) == 1, timeout=20, what="the event after the 429")
    tries = [q for q in isim.requests if q["path"] == "/events"]
    assert [q["status"] for q in tries] == [429, 202]
    assert tries[1]["wall"] >= reset - 0.05, "retried before X-RateLimit-Reset"
    assert dead_letters(svc) == []


def test_intercom_5xx_is_retried(make_service, isim):
    isim.add_contact("c-42", external_id="42")
    isim.fail_next(3, status=503, path_prefix="/events")
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event()).status == 200
    wait_for(lambda: len(isim.events) == 1, timeout=20, what="the event after 503s")
    assert isim.statuses("/events") == [503, 503, 503, 202]


def test_unknown_user_is_dead_lettered_and_replayable(make_service, isim):
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event(user="nobody")).status == 200
    wait_for(lambda: dead_letters(svc), timeout=15, what="the dead letter")
    dl = dead_letters(svc)[0]
    assert dl["destination"] == "intercom" and dl["kind"] == "event"
    assert dl["user_id"] == "nobody" and dl["status"] == 404
    assert dl["reason"].startswith("unknown_user")
    assert "not_found" in dl["response"]
    assert isim.events == []
    # the user shows up in Intercom later: an operator replays the dead letter
    isim.add_contact("c-nobody", external_id="nobody")
    r = svc.post(f"/v1/admin/dead-letters/{dl['id']}/replay?destination=intercom")
    assert r.status == 200 and r.json() == {"replayed": 1}, r
    wait_for(lambda: len(isim.events) == 1, timeout=15, what="the replayed event")
    assert dead_letters(svc) == []


def test_unauthorized_pauses_then_resumes(make_service, isim):
    isim.add_contact("c-42", external_id="42")
    isim.set_token("another-token")
    svc = make_service(env=ic_env(isim))
    assert post_cio(svc, cio_event()).status == 200
    wait_for(lambda: svc.get("/readyz").json()["checks"]["intercom"].startswith("unauthorized"),
             timeout=15, what="/readyz to report the refused token")
    assert svc.get("/readyz").status == 200  # never gates readiness
    assert dead_letters(svc) == []
    isim.set_token(TOKEN)
    wait_for(lambda: len(isim.events) == 1, timeout=20, what="delivery after the fix")
    assert svc.get("/readyz").json()["checks"]["intercom"] == "live"
    assert dead_letters(svc) == []


def test_shared_rate_limit_across_replicas(make_service, isim):
    """INTERCOM_RATE_LIMIT is per minute, counted per 10-second window (a sixth each)."""
    for i in range(30):
        isim.add_contact(f"c-rl-{i}", external_id=f"rl-{i}")
    env = ic_env(isim, INTERCOM_RATE_LIMIT=60)  # 10 per 10 s, for both replicas together
    a, b = make_service(env=env), make_service(env=env)
    for i in range(30):
        assert post_cio(a if i % 2 else b, cio_event(event_id=f"ev-rl-{i}", user=f"rl-{i}"),
                        ).status == 200
    wait_for(lambda: len(isim.events) >= 12, timeout=30, what="two windows of events")
    assert isim.max_requests_in_window(10.0) <= 10


# ----------------------------------------------------------------- identity look-ups

def test_contact_only_ticket_lands_on_the_right_user_via_lookup(make_service, isim):
    isim.add_contact("c-look-1", external_id="u-look-1")
    svc = make_service(env=ic_env(isim))
    t0 = int(time.time()) - 600
    # a ticket whose contact carries no external_id
    r = svc.webhook(ticket(topic="ticket.created", ticket_id="800000000000001",
                           users=[("c-look-1", None)], category="submitted",
                           created_at=t0, updated_at=t0 + 10))
    assert r.status == 200, r
    wait_for(lambda: svc.user("u-look-1")["open_ticket_count"] == 1, timeout=15,
             what="the look-up to link the contact")
    assert isim.lookups["c-look-1"] == 1
    assert svc.user("intercom:c-look-1")["open_ticket_count"] == 0
    # the real ticket.closed names only the contact id: it resolves u-look-1's ticket
    r = svc.webhook(ticket_closed_contact_only(ticket_id="800000000000001",
                                               contact_ids=("c-look-1",),
                                               created_at=t0, updated_at=t0 + 50))
    assert r.status == 200, r
    st = svc.user("u-look-1")
    assert st["open_ticket_count"] == 0 and st["has_open_ticket"] is False, st
    assert isim.lookups["c-look-1"] == 1  # the link is cached, no second look-up


def test_close_arriving_before_the_lookup_answer_still_wins(make_service, isim):
    isim.add_contact("c-look-2", external_id="u-look-2")
    isim.delay_next(1.5, path_prefix="/contacts/")
    svc = make_service(env=ic_env(isim))
    t0 = int(time.time()) - 600
    svc.webhook(ticket(topic="ticket.created", ticket_id="800000000000002",
                       users=[("c-look-2", None)], created_at=t0, updated_at=t0 + 10))
    svc.webhook(ticket_closed_contact_only(ticket_id="800000000000002",
                                           contact_ids=("c-look-2",),
                                           created_at=t0, updated_at=t0 + 50))
    wait_for(lambda: isim.lookups["c-look-2"] >= 1, timeout=10, what="the look-up")
    wait_for(lambda: svc.user("u-look-2")["updated_at"] is not None
             and svc.get("/v1/users/intercom:c-look-2").json()["updated_at"] is None,
             timeout=15, what="the state to move to u-look-2")
    assert svc.user("u-look-2")["open_ticket_count"] == 0


def test_leads_stay_intercom_ids(make_service, isim):
    isim.add_contact("c-lead-1", role="lead")
    svc = make_service(env=ic_env(isim))
    svc.webhook(conversation(topic="conversation.user.created", conv_id="810000000000001",
                             users=[("c-lead-1", None)], state="open",
                             created_at=int(time.time()) - 60, updated_at=int(time.time())))
    wait_for(lambda: isim.lookups["c-lead-1"] == 1, timeout=10, what="the look-up")
    time.sleep(0.5)
    assert svc.user("intercom:c-lead-1")["open_ticket_count"] == 1


# ----------------------------------------------------------------- backfill

def seed_open_conversations(isim, n, prefix="bf"):
    t0 = int(time.time()) - 86400
    convs = []
    for i in range(n):
        isim.add_contact(f"c-{prefix}-{i}", external_id=f"u-{prefix}-{i}")
        convs.append(isim.add_conversation(f"c-{prefix}-{i}", state="open",
                                           created_at=t0 + i, updated_at=t0 + i + 5))
    return convs


def run_backfill(redis, isim, *args, timeout=60):
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis.url, "INTERCOM_ACCESS_TOKEN": TOKEN,
           "INTERCOM_API_URL": isim.url,
           "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=66"}
    return subprocess.run([BIN, "backfill", *args], env=env, capture_output=True,
                          timeout=timeout)


def test_backfill_three_pages_then_a_closing_webhook(make_service, isim, redis):
    convs = seed_open_conversations(isim, 320)          # 3 pages of 150
    t = isim.add_ticket("c-bf-0", category="in_progress")
    isim.add_ticket("c-bf-1", category="resolved")       # not open: not recorded
    isim.close_conversation(convs[5]["id"])              # closed before the backfill
    p = run_backfill(redis, isim)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert len(isim.pages_served("conversations")) == 3
    svc = make_service(env=ic_env(isim))
    for i in (0, 1, 150, 299, 319):
        assert svc.user(f"u-bf-{i}")["has_open_ticket"] is True, i
    assert svc.user("u-bf-0")["open_ticket_count"] == 2   # conversation + ticket
    assert svc.user("u-bf-1")["open_ticket_count"] == 1
    assert svc.user("u-bf-5")["has_open_ticket"] is False
    status = svc.get("/v1/admin/backfill").json()
    assert status["status"] == "done" and status["records"] == 320, status
    # a webhook closing one of them afterwards wins
    c = convs[7]
    r = svc.webhook(conversation(topic="conversation.admin.closed", conv_id=c["id"],
                                 users=[("c-bf-7", "u-bf-7")], state="closed",
                                 created_at=c["created_at"], updated_at=c["updated_at"] + 100))
    assert r.status == 200
    assert svc.user("u-bf-7")["has_open_ticket"] is False
    # running it again changes nothing and does not reopen the closed one
    p = run_backfill(redis, isim)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert svc.user("u-bf-7")["has_open_ticket"] is False
    assert t["id"] in [x["id"] for x in svc.user("u-bf-0")["open_tickets"]]


def test_backfill_interrupted_then_resumed(make_service, isim, redis):
    seed_open_conversations(isim, 320, prefix="bi")
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis.url, "INTERCOM_ACCESS_TOKEN": TOKEN,
           "INTERCOM_API_URL": isim.url}
    # the second page answers late: the run is stopped while it waits for it
    isim.delay_next(0, path_prefix="/conversations/search")
    isim.delay_next(5, path_prefix="/conversations/search")
    p = subprocess.Popen([BIN, "backfill"], env=env, stderr=subprocess.PIPE)
    wait_for(lambda: len(isim.pages_served("conversations")) >= 1 and
             redis.cmd("HGET", "sd:{bf}:state", "conversations_cursor") is not None,
             timeout=20, what="the first page to be recorded")
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=15)[1].decode()
    assert p.returncode == 130, err[-2000:]
    assert "backfill_interrupted" in err
    cursor = redis.cmd("HGET", "sd:{bf}:state", "conversations_cursor")
    served_before = len(isim.pages_served("conversations"))
    q = run_backfill(redis, isim)
    assert q.returncode == 0, q.stderr.decode()[-2000:]
    assert "backfill_resumed" in q.stderr.decode()
    resumed = [r for r in isim.requests if r["path"] == "/conversations/search"][served_before:]
    first = json.loads(resumed[0]["body"])
    assert first["pagination"]["starting_after"] == cursor
    svc = make_service(env=ic_env(isim))
    for i in (0, 149, 150, 319):
        assert svc.user(f"u-bi-{i}")["has_open_ticket"] is True, i


def test_backfill_from_the_admin_api(make_service, isim):
    seed_open_conversations(isim, 5, prefix="ba")
    svc = make_service(env=ic_env(isim))
    assert svc.get("/v1/admin/backfill").json()["status"] == "never_run"
    r = svc.post("/v1/admin/backfill")
    assert r.status == 202 and r.json() == {"status": "started"}, r
    wait_for(lambda: svc.get("/v1/admin/backfill").json()["status"] == "done", timeout=20,
             what="the backfill to finish")
    assert svc.user("u-ba-4")["has_open_ticket"] is True
    metrics = svc.get("/metrics").body.decode()
    assert 'suppressd_backfill_records_total{kind="conversations"} 5' in metrics


def test_backfill_without_token_is_refused(make_service, redis, isim):
    svc = make_service()
    r = svc.post("/v1/admin/backfill")
    assert r.status == 409 and r.json()["error"] == "not_configured", r


# ----------------------------------------------------------------- reconciliation

def test_reconciliation_closes_a_ticket_whose_close_never_came(make_service, isim):
    t0 = int(time.time()) - 4 * 86400
    isim.add_contact("c-rc-1", external_id="u-rc-1")
    conv = isim.add_conversation("c-rc-1", state="open", created_at=t0, updated_at=t0 + 10)
    svc = make_service(env=ic_env(isim, SUPPRESS_RECONCILE_INTERVAL=1))
    svc.webhook(conversation(topic="conversation.user.created", conv_id=conv["id"],
                             users=[("c-rc-1", "u-rc-1")], state="open",
                             created_at=t0, updated_at=t0 + 10))
    assert svc.user("u-rc-1")["has_open_ticket"] is True
    # the close happened in Intercom, but its webhook was lost
    isim.close_conversation(conv["id"])
    wait_for(lambda: svc.user("u-rc-1")["has_open_ticket"] is False, timeout=20,
             what="reconciliation to close the ticket")
    assert isim.conversation_gets[conv["id"]] >= 1


def test_reconciliation_resolves_deleted_and_skips_young_tickets(make_service, isim):
    now = int(time.time())
    isim.add_contact("c-rc-2", external_id="u-rc-2")
    svc = make_service(env=ic_env(isim, SUPPRESS_RECONCILE_INTERVAL=1))
    # old ticket, deleted in Intercom (404); young conversation, still open there
    svc.webhook(ticket(topic="ticket.created", ticket_id="820000000000001",
                       users=[("c-rc-2", "u-rc-2")], created_at=now - 5 * 86400,
                       updated_at=now - 5 * 86400 + 5))
    svc.webhook(conversation(topic="conversation.user.created", conv_id="820000000000002",
                             users=[("c-rc-2", "u-rc-2")], state="open",
                             created_at=now - 60, updated_at=now - 50))
    assert svc.user("u-rc-2")["open_ticket_count"] == 2
    wait_for(lambda: svc.user("u-rc-2")["open_ticket_count"] == 1, timeout=20,
             what="the deleted ticket to go")
    assert [t["id"] for t in svc.user("u-rc-2")["open_tickets"]] == ["820000000000002"]
    assert isim.conversation_gets["820000000000002"] == 0
    assert isim.ticket_gets["820000000000001"] >= 1


def test_reconciliation_never_overrides_a_newer_webhook(make_service, isim):
    t0 = int(time.time()) - 4 * 86400
    isim.add_contact("c-rc-3", external_id="u-rc-3")
    # Intercom's answer is an older version (closed at t0+50) than the webhook we got
    # (reopened at t0+100): the webhook stays in force.
    conv = isim.add_conversation("c-rc-3", state="closed", created_at=t0, updated_at=t0 + 50)
    svc = make_service(env=ic_env(isim, SUPPRESS_RECONCILE_INTERVAL=1))
    svc.webhook(conversation(topic="conversation.admin.opened", conv_id=conv["id"],
                             users=[("c-rc-3", "u-rc-3")], state="open",
                             created_at=t0, updated_at=t0 + 100))
    wait_for(lambda: isim.conversation_gets[conv["id"]] >= 1, timeout=20,
             what="the re-check")
    time.sleep(0.5)
    assert svc.user("u-rc-3")["has_open_ticket"] is True


def test_sweep_drops_expired_ticket_records_and_unused_links(make_service, isim, redis):
    """Closed tickets and contact links are fields of bucket hashes, which have no per-field
    expiry: the periodic sweep must remove them once their time is up, and only then, or
    Redis grows for ever."""
    from harness import bucket_key, contact_link, ticket_record
    now = int(time.time())
    svc = make_service(env=ic_env(isim, SUPPRESS_RECONCILE_INTERVAL=1))
    svc.webhook(conversation(topic="conversation.user.created", conv_id="830000000000001",
                             users=[("c-sw-1", "u-sw-1")], state="open",
                             created_at=now - 60, updated_at=now - 50))
    svc.webhook(conversation(topic="conversation.admin.closed", conv_id="830000000000001",
                             users=[("c-sw-1", "u-sw-1")], state="closed",
                             created_at=now - 60, updated_at=now - 40))
    version, deleted, expires, owners = ticket_record(redis, "830000000000001")
    assert version.startswith("c|") and deleted == 0 and owners == ["u-sw-1"]
    assert now + 29 * 86400 < expires <= now + 31 * 86400   # kept 30 days for a late delete
    assert contact_link(redis, "c-sw-1") == "u-sw-1"
    # What older deliveries left behind: a closed ticket past its expiry, and a link nobody
    # used for longer than links are kept (400 days).
    redis.cmd("HSET", bucket_key("k", "830000000000009"), "830000000000009",
              f"c|{now - 40 * 86400}|0|c|0|0;0;{now - 5};u-sw-2")
    redis.cmd("HSET", bucket_key("c", "c-sw-old"), "c-sw-old", f"{now // 86400 - 401}|u-sw-2")
    wait_for(lambda: ticket_record(redis, "830000000000009") is None
             and contact_link(redis, "c-sw-old") is None, timeout=15,
             what="the sweep to drop the expired record and the unused link")
    assert ticket_record(redis, "830000000000001")[3] == ["u-sw-1"]
    assert contact_link(redis, "c-sw-1") == "u-sw-1"
