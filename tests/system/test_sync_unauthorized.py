"""401/403 pause delivery instead of dead-lettering everything: /readyz (still 200) says
why in checks.customerio, nothing is dead-lettered however long it lasts, Customer.io is
only probed, and delivery resumes by itself once the credentials work again."""
import time

import pytest

from harness import wait_for
from sync_helpers import (KEY, SITE, admin, api_requests, cio_env, dead_letters, identifies_of,
                          open_conversation, post_ok, readiness, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_pause_then_resume_by_themselves(sim, redis, make_service, status):
    give_up = 1
    svc = make_service(env=cio_env(sim, SUPPRESS_SYNC_GIVE_UP=give_up,
                                   SUPPRESS_SYNC_PROBE_MS=400))
    if status == 401:
        sim.set_credentials(SITE, "rotated-key")
    else:
        sim.fail_for(3600, status=403, body={"meta": {"error": "Forbidden"}})
    users = [f"u-sync-auth-{status}-{i}" for i in range(3)]
    t = int(time.time()) - 600
    for i, u in enumerate(users):
        post_ok(svc, open_conversation(u, f"8870000000000{status}{i}", t + i))

    wait_for(lambda: readiness(svc).startswith("unauthorized"), timeout=20,
             what="checks.customerio unauthorized")
    ready = svc.get("/readyz")
    assert ready.status == 200, ready
    why = ready.json()["checks"]["customerio"]
    assert f"HTTP {status}" in why, why
    q = admin(svc, "GET", "queue").json()["destinations"]["customerio"]
    assert q["status"] == why and q["depth"] >= 3, q

    # Paused for longer than SUPPRESS_SYNC_GIVE_UP: still nothing dead-lettered, and only
    # probes (one per SUPPRESS_SYNC_PROBE_MS) reach Customer.io.
    paused_at = time.monotonic()
    before = len(api_requests(sim))
    time.sleep(give_up + 1.0)
    assert dead_letters(svc) == []
    assert len(api_requests(sim)) == before, "data requests sent while paused"
    probes = [r for r in sim.requests if r["path"] == "/api/v1/accounts/region"
              and r["time"] >= paused_at]
    assert 2 <= len(probes) <= (time.monotonic() - paused_at) / 0.4 + 2, len(probes)
    assert not set(users) & set(sim.profiles)

    # Credentials fixed: the next probe resumes delivery, nothing is lost.
    if status == 401:
        sim.set_credentials(SITE, KEY)
    else:
        sim.fail_for(0)
    wait_for(lambda: all(len(sim.events_for(u)) == 1 for u in users), timeout=30,
             what="delivery after the credentials were fixed")
    wait_drained(redis)
    assert readiness(svc) == "live"
    for u in users:
        assert identifies_of(sim, u)[-1]["has_open_ticket"] is True
    assert dead_letters(svc) == []
    msgs = [line.get("msg") for line in svc.log_lines()]
    assert "cio_unauthorized" in msgs and "cio_resumed" in msgs
