"""The operator API under /v1/admin/: queue depth and oldest age, dead letters paged newest
first, replay of one and of all, a forced resync of one user, the same Bearer auth as
/v1/*, and the matching series in /metrics."""
import time

from harness import wait_for
from sync_helpers import (admin, cio_env, dead_letters, identifies_of, metric,
                          open_conversation, pause_delivery, post_ok, readiness,
                          resume_delivery, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


def queue(svc):
    r = admin(svc, "GET", "queue")
    assert r.status == 200, r
    return r.json()["destinations"]["customerio"]


def test_queue_depth_and_oldest_age(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    q = queue(svc)
    assert q == {"depth": 0, "oldest_age_seconds": 0, "dead_letters": 0, "status": "live"}, q

    pause_delivery(sim, svc)
    t = int(time.time()) - 60
    users = [f"u-sync-admin-q{i}" for i in range(3)]
    for i, u in enumerate(users):
        post_ok(svc, open_conversation(u, f"88900000000000{i}", t + i))
    wait_for(lambda: queue(svc)["oldest_age_seconds"] >= 1.0, timeout=20,
             what="the queue to age")
    q = queue(svc)
    assert q["depth"] == 4, q                        # the three and the warm-up user
    assert q["status"].startswith("unauthorized: ")
    age = q["oldest_age_seconds"]
    wait_for(lambda: queue(svc)["oldest_age_seconds"] >= age + 0.5, timeout=10,
             what="the oldest age to grow")
    # /metrics reports the same figures (refreshed by the queue call and every 5 s).
    assert metric(svc, "suppressd_queue_depth", {"destination": "customerio"}) == 4
    assert metric(svc, "suppressd_queue_oldest_age_seconds", {"destination": "customerio"}) \
        >= age + 0.5

    resume_delivery(sim)
    wait_drained(redis)
    wait_for(lambda: queue(svc) == {"depth": 0, "oldest_age_seconds": 0, "dead_letters": 0,
                                    "status": "live"}, timeout=10, what="an empty queue")


def test_dead_letters_paged_replayed_and_resync(sim, redis, make_service):
    svc = make_service(env=cio_env(sim, CIO_API="v1"))
    bad = [f"u-sync-admin-dl{i}" for i in range(5)]
    for u in bad:
        sim.reject_identifier(u)
    t = int(time.time()) - 600
    for i, u in enumerate(bad):
        post_ok(svc, open_conversation(u, f"88900000000010{i}", t + i))
    wait_for(lambda: len(dead_letters(svc)) == 10, timeout=30, what="ten dead letters")
    wait_drained(redis)
    assert queue(svc)["dead_letters"] == 10

    # Pages of 3, newest first, each id once, chained by next_cursor.
    seen, cursor, pages = [], None, 0
    while True:
        path = "dead-letters?limit=3" + (f"&cursor={cursor}" if cursor else "")
        r = admin(svc, "GET", path)
        assert r.status == 200, r
        page = r.json()
        pages += 1
        assert len(page["items"]) == (3 if pages < 4 else 1), page
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    ids = [d["id"] for d in seen]
    assert len(set(ids)) == 10
    keyed = [tuple(int(x) for x in i.split("-")) for i in ids]
    assert keyed == sorted(keyed, reverse=True)
    assert {d["user_id"] for d in seen} == set(bad)
    assert seen == dead_letters(svc)

    for bad_path in ("dead-letters?limit=0", "dead-letters?limit=501",
                     "dead-letters?cursor=abc", "queue?destination=mailchimp"):
        r = admin(svc, "GET", bad_path)
        assert r.status == 400, (bad_path, r)
    assert admin(svc, "POST", "dead-letters/1-0/replay").status == 404
    assert admin(svc, "POST", "dead-letters/not-an-id/replay").status == 404
    assert admin(svc, "GET", "dead-letters/replay").status == 405
    assert admin(svc, "POST", "queue").status == 405

    # Replay one, then all the rest.
    for u in bad:
        sim.unreject_identifier(u)
    one = seen[-1]
    r = admin(svc, "POST", f"dead-letters/{one['id']}/replay")
    assert r.status == 200 and r.json() == {"replayed": 1}
    assert admin(svc, "POST", f"dead-letters/{one['id']}/replay").status == 404
    wait_for(lambda: len(dead_letters(svc)) == 9, timeout=5, what="nine dead letters left")
    r = admin(svc, "POST", "dead-letters/replay")
    assert r.status == 200 and r.json() == {"replayed": 9}
    wait_for(lambda: all(len(sim.events_for(u)) == 1 and identifies_of(sim, u) for u in bad),
             timeout=30, what="the replayed items delivered")
    wait_drained(redis)
    assert dead_letters(svc) == [] and queue(svc)["dead_letters"] == 0
    assert admin(svc, "POST", "dead-letters/replay").json() == {"replayed": 0}

    # Resync: a fresh identify without any webhook, for an id that needs encoding too.
    u = bad[0]
    n = len(identifies_of(sim, u))
    r = admin(svc, "POST", f"users/{u}/resync")
    assert r.status == 200 and r.json() == {"queued": True}, r
    wait_for(lambda: len(identifies_of(sim, u)) == n + 1, timeout=20, what="the resync")
    assert identifies_of(sim, u)[-1]["has_open_ticket"] is True
    odd = "u sync/admin@example.com"
    r = admin(svc, "POST", "users/u%20sync%2Fadmin%40example.com/resync")
    assert r.status == 200, r
    wait_for(lambda: identifies_of(sim, odd), timeout=20, what="the encoded resync")
    assert identifies_of(sim, odd)[-1]["has_open_ticket"] is False
    r = admin(svc, "POST", "users/intercom%3A123/resync")
    assert r.status == 400 and r.json()["error"] == "invalid_user_id", r
    wait_drained(redis)

    # The same story in /metrics.
    assert metric(svc, "suppressd_cio_items_total", {"outcome": "dead_lettered"}) == 10
    assert metric(svc, "suppressd_cio_items_total", {"outcome": "sent"}) >= 12
    assert metric(svc, "suppressd_cio_requests_total", {"outcome": "rejected"}) == 10
    assert metric(svc, "suppressd_cio_requests_total", {"outcome": "sent"}) >= 12
    assert metric(svc, "suppressd_dead_letters", {"destination": "customerio"}) == 0
    assert metric(svc, "suppressd_http_requests_total", {"route": "admin", "code": "200"}) > 0


def test_admin_api_takes_the_api_tokens(sim, make_service):
    svc = make_service(env=cio_env(sim, SUPPRESS_API_TOKENS="tok-admin-1"))
    for method, path in (("GET", "queue"), ("GET", "dead-letters"),
                         ("POST", "dead-letters/replay"), ("POST", "users/u-1/resync")):
        r = svc.request(method, "/v1/admin/" + path)
        assert r.status == 401, (path, r)
        r = svc.request(method, "/v1/admin/" + path,
                        headers={"Authorization": "Bearer tok-admin-1"})
        assert r.status == 200, (path, r)
    assert readiness(svc) == "live"
