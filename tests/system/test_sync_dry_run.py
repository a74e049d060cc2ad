"""Without CIO_SITE_ID/CIO_API_KEY the service runs in dry run: every request it would
send is logged as one cio_dry_run line (method, url, body), nothing goes out, and the
queue drains as if it had been sent."""
import time

import pytest

from harness import wait_for
from sync_helpers import (admin, churn_tag, open_conversation, post_ok, readiness,
                          wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


def dry_lines(svc):
    return [line for line in svc.log_lines() if line.get("msg") == "cio_dry_run"]


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_dry_run_logs_requests_and_drains_the_queue(sim, redis, make_service, api):
    # CIO_TRACK_URL points at the simulator: nothing may reach it.
    svc = make_service(env={"CIO_TRACK_URL": sim.url, "CIO_API": api,
                            "CIO_SITE_ID": None, "CIO_API_KEY": None})
    assert readiness(svc) == "dry_run"
    assert admin(svc, "GET", "queue").json()["destinations"]["customerio"]["status"] == "dry_run"
    u = f"u-sync-dry-{api}"
    t = int(time.time()) - 600
    post_ok(svc, open_conversation(u, "890000000000001", t))
    post_ok(svc, churn_tag(u, t + 10))
    wait_drained(redis)
    wait_for(lambda: any("support_tag_applied" in str(line.get("body")) for line in dry_lines(svc)),
             timeout=10, what="the dry-run lines")
    lines = dry_lines(svc)
    assert lines
    for line in lines:
        assert line["level"] == "info"
        assert line["url"].startswith(sim.url + "/api/")
        assert isinstance(line["items"], int) and line["items"] >= 1
    if api == "v2":
        assert {line["method"] for line in lines} == {"POST"}
        ops = [op for line in lines for op in line["body"]["batch"]]
        idents = [op for op in ops if op["action"] == "identify"]
        assert idents and idents[-1]["identifiers"] == {"id": u}
        assert idents[-1]["attributes"]["has_open_ticket"] is True
        assert idents[-1]["attributes"]["churn_risk"] is True
        names = sorted(op["name"] for op in ops if op["action"] == "event")
    else:
        assert {line["method"] for line in lines} == {"PUT", "POST"}
        puts = [line for line in lines if line["method"] == "PUT"]
        assert puts[-1]["url"] == f"{sim.url}/api/v1/customers/{u}"
        assert puts[-1]["body"]["churn_risk"] is True
        names = sorted(line["body"]["name"] for line in lines if line["method"] == "POST")
    assert names == ["support_tag_applied", "support_ticket_opened"]
    assert sim.requests == []
    assert admin(svc, "GET", "dead-letters").json()["items"] == []
