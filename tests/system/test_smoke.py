"""The shortest path through the service: a signed open, a query, a signed close."""
from payloads import conversation


def test_open_then_close_round_trip(svc):
    r = svc.webhook(conversation(conv_id="1001", users=[("c1", "u-smoke")], state="open",
                                 updated_at=1768000100))
    assert r.status == 200, r
    u = svc.user("u-smoke")
    assert u["has_open_ticket"] is True
    assert u["open_ticket_count"] == 1
    assert u["open_tickets"][0]["id"] == "1001"
    assert svc.suppression("u-smoke", "renewal").json() == {
        "user_id": "u-smoke", "campaign": "renewal", "suppressed": True,
        "reasons": ["open_ticket"]}

    r = svc.webhook(conversation(conv_id="1001", users=[("c1", "u-smoke")], state="closed",
                                 updated_at=1768000200))
    assert r.status == 200, r
    u = svc.user("u-smoke")
    assert u["has_open_ticket"] is False
    assert u["open_tickets"] == []
