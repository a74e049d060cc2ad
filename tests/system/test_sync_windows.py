"""A rule window that elapses changes a user's attributes without any webhook: the user is
re-synced when it ends (SUPPRESS_RULES_FILE windows of a few seconds here)."""
import json
import time

from harness import wait_for
from sync_helpers import (churn_tag, cio_env, close_conversation, identifies_of,
                          open_conversation, post_ok, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


CHURN_S, CSAT_S = 2, 4


def test_elapsed_windows_resync_the_user_without_a_webhook(sim, redis, make_service, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"windows": {"churn_risk": CHURN_S, "low_csat": CSAT_S}}))
    svc = make_service(env=cio_env(sim, SUPPRESS_RULES_FILE=str(rules)))
    u = "u-sync-window"
    t = int(time.time())
    post_ok(svc, open_conversation(u, "888000000000001", t - 100))
    post_ok(svc, close_conversation(u, "888000000000001", t - 100, t, rating=(1, t)))
    post_ok(svc, churn_tag(u, t))

    def last():
        ids = identifies_of(sim, u)
        return ids[-1] if ids else {}

    wait_for(lambda: last().get("churn_risk") is True and last().get("last_csat_score") == 1,
             timeout=20, what="the first identify")
    assert last()["support_suppressed_feature_adoption"] is True
    assert last()["support_suppressed_renewal"] is True
    webhooks = len(identifies_of(sim, u))

    # No webhook from here on.
    wait_for(lambda: last().get("churn_risk") is False, timeout=CHURN_S + 15,
             what="churn_risk false once its window elapsed")
    assert time.time() >= t + CHURN_S
    a = last()
    assert a["support_suppressed_feature_adoption"] is False
    assert a["churn_risk_at"] == t                      # the tag's time is kept
    assert a["support_suppressed_renewal"] is True      # the CSAT window is still open

    wait_for(lambda: last().get("support_suppressed_renewal") is False, timeout=CSAT_S + 15,
             what="renewal lifted once the low-CSAT window elapsed")
    assert time.time() >= t + CSAT_S
    b = last()
    assert b["last_csat_score"] == 1 and b["last_csat_at"] == t
    assert b["churn_risk"] is False and b["has_open_ticket"] is False
    wait_drained(redis)
    # One identify per elapsed window, not a loop.
    time.sleep(1.0)
    assert len(identifies_of(sim, u)) == webhooks + 2, identifies_of(sim, u)
    assert svc.suppression(u, "renewal").json()["suppressed"] is False
    assert svc.suppression(u, "feature_adoption").json()["suppressed"] is False
