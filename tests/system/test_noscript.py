"""Redis losing its script cache (restart without persistence, failover, SCRIPT FLUSH):
every script call answered NOSCRIPT is resent as EVAL with the same arguments, and the
webhook is recorded exactly as it would have been."""
from payloads import conversation


def test_webhooks_recorded_after_script_flush(svc, redis):
    redis.cmd("SCRIPT", "FLUSH")
    open_ = conversation(conv_id="2001", users=[("c1", "u-noscript")], state="open",
                         updated_at=1768000100)
    r = svc.webhook(open_)
    assert r.status == 200, r
    assert r.json() == {"status": "recorded"}
    u = svc.user("u-noscript")
    assert u["open_ticket_count"] == 1
    assert u["open_tickets"][0]["id"] == "2001"

    # The same delivery again: recognised as a duplicate through the re-cached scripts.
    r = svc.webhook(open_)
    assert r.status == 200, r
    assert r.json() == {"status": "duplicate"}

    # Flushed again between two calls of one webhook's chain; then a close.
    redis.cmd("SCRIPT", "FLUSH")
    r = svc.webhook(conversation(conv_id="2001", users=[("c1", "u-noscript")], state="closed",
                                 updated_at=1768000200))
    assert r.status == 200, r
    assert r.json() == {"status": "recorded"}
    assert svc.user("u-noscript")["open_tickets"] == []
