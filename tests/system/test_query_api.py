"""The query API: user state, single and batch suppression checks, API tokens, custom
rules, and /metrics."""
import json
import re
import time

import pytest

from payloads import contact_tag, conversation

DEFAULT_CAMPAIGNS = {"commercial", "expansion", "renewal", "feature_adoption"}


def assert_error(r, status, code=None):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def open_ticket(svc, user, conv_id, contact=None):
    r = svc.webhook(conversation(conv_id=conv_id, users=[(contact or "cid-" + user, user)],
                                 state="open", updated_at=1768000100))
    assert r.status == 200, r


def close_ticket(svc, user, conv_id, contact=None):
    r = svc.webhook(conversation(conv_id=conv_id, users=[(contact or "cid-" + user, user)],
                                 state="closed", updated_at=1768000200))
    assert r.status == 200, r


# --------------------------------------------------------------------------- user state

def test_never_seen_user_has_the_empty_state(svc, redis):
    r = svc.get("/v1/users/u-never-seen")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    u = r.json()
    assert u["user_id"] == "u-never-seen"
    assert u["has_open_ticket"] is False
    assert u["open_ticket_count"] == 0
    assert u["open_tickets"] == []
    assert u["churn_risk"] is False
    assert u["churn_risk_at"] is None
    assert u["last_csat"] is None
    assert u["suppressed"] == {c: False for c in DEFAULT_CAMPAIGNS}
    assert u.get("updated_at") is None, u
    # reading does not write
    assert redis.cmd("DBSIZE") == 0


def test_queries_do_not_write_to_redis(svc, redis):
    assert svc.get("/v1/users/u-q1").status == 200
    assert svc.suppression("u-q1", "renewal").status == 200
    assert svc.check("renewal", ["u-q1", "u-q2"]).status == 200
    assert redis.cmd("DBSIZE") == 0


def test_suppression_answers_for_each_default_campaign(svc):
    open_ticket(svc, "u-s1", "2101")
    expected = {"commercial": ["open_ticket"], "expansion": ["open_ticket"],
                "renewal": ["open_ticket"], "feature_adoption": []}
    for campaign, reasons in expected.items():
        r = svc.suppression("u-s1", campaign)
        assert r.status == 200, r
        assert r.headers.get("content-type", "").startswith("application/json")
        assert r.json() == {"user_id": "u-s1", "campaign": campaign,
                            "suppressed": bool(reasons), "reasons": reasons}
    u = svc.user("u-s1")
    assert u["suppressed"] == {c: bool(expected[c]) for c in DEFAULT_CAMPAIGNS}


@pytest.mark.parametrize("query", ["", "?", "?campaign=", "?other=renewal"],
                         ids=["no-query", "empty-query", "empty-campaign", "other-param"])
def test_suppression_without_campaign_is_400(svc, query):
    assert_error(svc.get(f"/v1/users/u-s2/suppression{query}"), 400)


@pytest.mark.parametrize("campaign", ["nope", "Renewal", "renewal ", "commercial,renewal"])
def test_suppression_unknown_campaign_is_400_unknown_campaign(svc, campaign):
    assert_error(svc.suppression("u-s3", campaign), 400, "unknown_campaign")


# --------------------------------------------------------------------------- batch

def test_batch_results_in_request_order_with_duplicates_and_unknown_users(svc):
    open_ticket(svc, "u-b-open", "2201")
    open_ticket(svc, "u-b-closed", "2202")
    close_ticket(svc, "u-b-closed", "2202")
    ids = ["u-b-unknown", "u-b-open", "u-b-closed", "u-b-open", "u-b-unknown", "u-b-other"]
    r = svc.check("commercial", ids)
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json")
    body = r.json()
    assert body["campaign"] == "commercial"
    got = [(x["user_id"], x["suppressed"], x["reasons"]) for x in body["results"]]
    assert got == [
        ("u-b-unknown", False, []),
        ("u-b-open", True, ["open_ticket"]),
        ("u-b-closed", False, []),
        ("u-b-open", True, ["open_ticket"]),
        ("u-b-unknown", False, []),
        ("u-b-other", False, []),
    ]


ODD_IDS = ['quote"d', "back\\slash", "tab\there", "line\nbreak", "ctl\x01\x1f",
           "caf\u00e9 \U0001F600", "slash/ok", "\u2028sep"]


def test_verdicts_carry_any_user_id_intact(svc):
    """The verdict text is written by hand (not by jansson): every user id the API
    accepts must come back as the same string, in both answer shapes."""
    from urllib.parse import quote
    open_ticket(svc, ODD_IDS[0], "2290")
    for uid in ODD_IDS:
        r = svc.get(f"/v1/users/{quote(uid, safe='')}/suppression?campaign=renewal")
        assert r.status == 200, (uid, r)
        body = r.json()
        assert body["user_id"] == uid and body["campaign"] == "renewal", body
        assert body["suppressed"] is (uid == ODD_IDS[0]), body
    r = svc.check("renewal", ODD_IDS)
    assert r.status == 200, r
    got = [(x["user_id"], x["suppressed"]) for x in r.json()["results"]]
    assert got == [(uid, uid == ODD_IDS[0]) for uid in ODD_IDS]


def test_batch_of_exactly_1000_ids(svc):
    open_ticket(svc, "u-k-17", "2301")
    open_ticket(svc, "u-k-999", "2302")
    ids = [f"u-k-{i}" for i in range(999, -1, -1)]       # reverse order on purpose
    r = svc.check("renewal", ids)
    assert r.status == 200, r
    results = r.json()["results"]
    assert [x["user_id"] for x in results] == ids
    suppressed = {x["user_id"] for x in results if x["suppressed"]}
    assert suppressed == {"u-k-17", "u-k-999"}
    for x in results:
        assert x["reasons"] == (["open_ticket"] if x["suppressed"] else [])


def test_batch_of_1001_ids_is_400(svc):
    assert_error(svc.check("renewal", [f"u-{i}" for i in range(1001)]), 400)


def test_batch_unknown_campaign_is_400_unknown_campaign(svc):
    assert_error(svc.check("nope", ["u-1"]), 400, "unknown_campaign")


def test_batch_missing_campaign_is_400(svc):
    r = svc.post("/v1/suppression/check", body={"user_ids": ["u-1"]},
                 headers={"Content-Type": "application/json"})
    assert_error(r, 400)


# --------------------------------------------------------------------------- API tokens

def test_api_tokens(make_service):
    s = make_service(env={"SUPPRESS_API_TOKENS": "tok1,tok2"})
    v1 = [
        lambda h: s.get("/v1/users/u-t", headers=h),
        lambda h: s.get("/v1/users/u-t/suppression?campaign=renewal", headers=h),
        lambda h: s.post("/v1/suppression/check",
                         body={"campaign": "renewal", "user_ids": ["u-t"]},
                         headers={"Content-Type": "application/json", **h}),
    ]
    refused = [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
               {"Authorization": "Bearer "}, {"Authorization": "Bearer wrong"},
               {"Authorization": "Bearer tok"}, {"Authorization": "Bearer tok1x"},
               {"Authorization": "Bearer tok1,tok2"}, {"Authorization": "tok1"},
               {"Authorization": "Basic tok1"}, {"Authorization": "Basic dG9rMTo="}]
    for call in v1:
        for h in refused:
            r = call(h)
            assert r.status == 401, (h, r)
            assert_error(r, 401)
        for tok in ("tok1", "tok2"):
            r = call({"Authorization": f"Bearer {tok}"})
            assert r.status == 200, (tok, r)
    # the token does not unlock anything it should not: error paths stay errors
    assert_error(s.get("/v1/users/u-t/suppression?campaign=nope",
                       headers={"Authorization": "Bearer tok2"}), 400, "unknown_campaign")

    # outside /v1/*, no token is needed
    assert s.get("/healthz").status == 200
    assert s.get("/readyz").status == 200
    assert s.get("/metrics").status == 200
    assert s.request("HEAD", "/webhooks/intercom").status == 200
    r = s.webhook(conversation(conv_id="2401", users=[("cid-t", "u-t")], state="open"))
    assert r.status == 200, r
    assert s.user("u-t", headers={"Authorization": "Bearer tok1"})["has_open_ticket"] is True


# --------------------------------------------------------------------------- rules file

def test_rules_file_with_custom_campaigns(make_service, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({
        "low_csat_max": 3,
        "campaigns": {"quiet_period": ["open_ticket", "low_csat"],
                      "winback": ["churn_risk"]},
    }))
    s = make_service(env={"SUPPRESS_RULES_FILE": str(rules)})
    now = int(time.time())
    # u-r1: an open ticket; u-r2: a churn-risk tag; u-r3: a closed ticket rated 3/5
    open_ticket(s, "u-r1", "2501")
    r = s.webhook(contact_tag(contact_id="cid-u-r2", external_id="u-r2", event_at=now - 60))
    assert r.status == 200, r
    r = s.webhook(conversation(conv_id="2503", users=[("cid-u-r3", "u-r3")], state="closed",
                               created_at=now - 3600, updated_at=now - 60,
                               rating=(3, now - 60)))
    assert r.status == 200, r

    expect = {
        ("u-r1", "quiet_period"): ["open_ticket"],
        ("u-r2", "quiet_period"): [],
        ("u-r3", "quiet_period"): ["low_csat"],       # 3 <= low_csat_max
        ("u-r1", "winback"): [],
        ("u-r2", "winback"): ["churn_risk"],
        ("u-r3", "winback"): [],
    }
    for (user, campaign), reasons in expect.items():
        r = s.suppression(user, campaign)
        assert r.status == 200, r
        assert r.json() == {"user_id": user, "campaign": campaign,
                            "suppressed": bool(reasons), "reasons": reasons}, (user, campaign)
    for campaign in ("quiet_period", "winback"):
        users = ["u-r3", "u-r2", "u-r1", "u-r-none"]
        r = s.check(campaign, users)
        assert r.status == 200, r
        assert r.json()["campaign"] == campaign
        got = [(x["user_id"], x["suppressed"], x["reasons"]) for x in r.json()["results"]]
        assert got == [(u, bool(expect.get((u, campaign))), expect.get((u, campaign), []))
                       for u in users]
    for user in ("u-r1", "u-r2", "u-r3"):
        sup = s.user(user)["suppressed"]
        for campaign in ("quiet_period", "winback"):
            assert sup.get(campaign) is bool(expect[(user, campaign)]), (user, sup)
    assert_error(s.suppression("u-r1", "no-such-campaign"), 400, "unknown_campaign")


# --------------------------------------------------------------------------- metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)'
                    r'( -?[0-9]+)?$')


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def total(samples, name):
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def test_metrics_prometheus_text(svc):
    before = svc.get("/metrics")
    assert before.status == 200, before
    assert before.headers.get("content-type", "").startswith("text/plain"), before.headers
    b = parse_metrics(before.body.decode())

    r = svc.webhook(conversation(conv_id="2601", users=[("cid-m", "u-m")], state="open"))
    assert r.status == 200, r
    assert svc.get("/v1/users/u-m").status == 200

    after = svc.get("/metrics")
    text = after.body.decode()
    assert "suppressd_http_requests_total" in text
    assert "suppressd_webhooks_total" in text
    a = parse_metrics(text)
    assert total(a, "suppressd_webhooks_total") == total(b, "suppressd_webhooks_total") + 1
    # the webhook, the query and the first /metrics call at least
    assert (total(a, "suppressd_http_requests_total") >=
            total(b, "suppressd_http_requests_total") + 3)
