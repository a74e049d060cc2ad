"""Transient failures: 429 and 5xx storms, dropped connections and answers that come too
late all end with Customer.io holding the final state and each event exactly once, under
the id it was recorded with (a retry reuses it; Customer.io drops the repeat). The first
retry comes after about 200 ms; a Retry-After header is honoured."""
import json
import time

from harness import wait_for
from sync_helpers import (api_requests, churn_tag, cio_env, close_conversation, dead_letters,
                          identifies_of, open_conversation, post_ok, sent_event_ids,
                          wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


def story(svc, u, conv):
    t = int(time.time()) - 3600
    post_ok(svc, open_conversation(u, conv, t))
    post_ok(svc, churn_tag(u, t + 60))
    post_ok(svc, close_conversation(u, conv, t, t + 120, rating=(4, t + 120)))
    return t


EXPECTED = sorted(["support_ticket_opened", "support_tag_applied", "support_ticket_resolved",
                   "csat_score_submitted"])


def check_final(sim, redis, svc, u, t):
    wait_for(lambda: sorted(e["name"] for e in sim.events_for(u)) == EXPECTED, timeout=40,
             what="every event delivered")
    wait_drained(redis, timeout=40)
    last = identifies_of(sim, u)[-1]
    assert last["has_open_ticket"] is False and last["open_ticket_count"] == 0
    assert last["churn_risk"] is True and last["last_csat_score"] == 4
    assert last["last_csat_at"] == t + 120
    evs = sim.events_for(u)
    assert len({e["id"] for e in evs}) == len(evs) == 4
    # Every attempt of one event carried the same id.
    sent = {k: v for k, v in sent_event_ids(sim).items() if k[0] == u}
    assert len(sent) == 4, sent
    for key, ids in sent.items():
        assert len(ids) == 1, f"{key} was sent under several ids: {ids}"
    assert {e["id"] for e in evs} == set().union(*sent.values())
    assert dead_letters(svc) == []


def test_429_storm(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    sim.fail_next(3, status=429)
    u = "u-sync-429"
    t = story(svc, u, "882000000000001")
    check_final(sim, redis, svc, u, t)
    assert sim.statuses().count(429) == 3
    assert len(api_requests(sim)) >= 4


def test_5xx_storm_and_dropped_connections(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    for status in (500, 502, 503, 504, 503):
        sim.fail_next(1, status=status)
    sim.drop_connection_next(1)
    sim.drop_connection_next(1, reset=True)
    u = "u-sync-5xx"
    t = story(svc, u, "882000000000002")
    check_final(sim, redis, svc, u, t)
    # Every programmed failure was met (by a send, or by the probe a failure triggers).
    assert sorted(s for s in sim.statuses() if s and s >= 500) == [500, 502, 503, 503, 504]
    assert len([r for r in sim.requests if r["fault"] == "drop"]) == 2


def test_late_answers_are_retried_under_the_same_event_ids(sim, redis, make_service):
    """Customer.io applied the batch but the answer came after CIO_TIMEOUT_MS: the retry
    carries the same ids, so Customer.io drops the repeats."""
    svc = make_service(env=cio_env(sim, CIO_TIMEOUT_MS=800))
    sim.delay_next(2, 2.0, process_first=True)
    u = "u-sync-late"
    t = story(svc, u, "882000000000003")
    check_final(sim, redis, svc, u, t)
    assert sim.event_duplicates >= 1, "the test did not produce a late answer"


def times_for(sim, user):
    quoted = json.dumps(user).encode()
    return [r["time"] for r in api_requests(sim) if quoted in r["body"]]


def walls_for(sim, user):
    quoted = json.dumps(user).encode()
    return [r["wall"] for r in api_requests(sim) if quoted in r["body"]]


def test_first_retry_is_quick_and_retry_after_is_honoured(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    # A plain 503: the next attempt comes after about 200 ms (well under 1.5 s).
    sim.fail_next(1, status=503)
    u = "u-sync-retry-first"
    post_ok(svc, open_conversation(u, "882000000000004", int(time.time()) - 60))
    wait_for(lambda: len(sim.events_for(u)) == 1, timeout=20, what="delivery after a 503")
    times = times_for(sim, u)
    assert len(times) == 2, sim.statuses()
    assert times[1] - times[0] < 1.5, f"first retry after {times[1] - times[0]:.2f}s"
    wait_drained(redis)

    # 429 with Retry-After: 2: nothing for that user before 2 s have passed.
    sim.fail_next(1, status=429, headers={"Retry-After": "2"})
    u2 = "u-sync-retry-after"
    post_ok(svc, open_conversation(u2, "882000000000005", int(time.time()) - 60))
    wait_for(lambda: len(sim.events_for(u2)) == 1, timeout=20, what="delivery after a 429")
    times = times_for(sim, u2)
    assert len(times) == 2, sim.statuses()
    gap = times[1] - times[0]
    assert 1.95 <= gap < 7, f"retried {gap:.2f}s after a 429 with Retry-After: 2"
    wait_drained(redis)

    # X-RateLimit-Reset (unix seconds) the same.
    reset = int(time.time()) + 2
    sim.fail_next(1, status=429, headers={"X-RateLimit-Reset": str(reset)})
    u3 = "u-sync-ratelimit-reset"
    post_ok(svc, open_conversation(u3, "882000000000006", int(time.time()) - 60))
    wait_for(lambda: len(sim.events_for(u3)) == 1, timeout=20, what="delivery after a 429")
    walls = walls_for(sim, u3)
    assert len(walls) == 2, sim.statuses()
    assert walls[1] >= reset - 0.05, f"retried {reset - walls[1]:.2f}s before X-RateLimit-Reset"
    wait_drained(redis)
    assert dead_letters(svc) == []
