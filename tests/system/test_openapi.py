"""api/openapi.yaml against the real service.

First the document itself: an OpenAPI 3.1 document whose every $ref resolves, whose every
operation lists its responses, whose schemas are valid JSON Schema 2020-12 and whose
examples match their own schemas. Then the real binary (ASan build, real Redis) is driven
through every operation, and every answer it gives is checked against the document: the
status must be one the operation lists, the Content-Type one it declares, the body must
validate against that status's schema (error codes included), and required headers
(Allow on 405) must be there. A method a path does not list must answer 405 with an Allow
header naming exactly the methods the document lists for that path; a path the document
does not list must answer 404. The last test checks that every operation was exercised.

The document describes CONTRACT.md; where the service disagrees with the contract, the
document follows the contract and the test fails (it is not bent to the service).
"""
import hashlib
import hmac
import json
import re
import time
import urllib.parse

import pytest
import yaml
from jsonschema import Draft202012Validator

from harness import ROOT, Redis, sign, wait_for
from intercom_sim import IntercomSim
import payloads

try:  # jsonschema >= 4.18
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:  # jsonschema 4.10 (Debian): RefResolver
    Registry = None
    from jsonschema import RefResolver

SPEC_PATH = ROOT / "api" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SPEC_URI = "urn:suppressd:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ONE_MIB = 1 << 20
DEFAULT_CAMPAIGNS = ("commercial", "expansion", "renewal", "feature_adoption")
CIO_KEY = "cio-signing-key-openapi"
TOKENS = ("tok-openapi-a", "tok-openapi-b")
INTERCOM_TOKEN = "ic-token-openapi"

# Operations (path template, METHOD) this file does not reach, and why. Empty: every
# operation in the document is driven below.
NOT_EXERCISED = {}

# Documented statuses that must have been observed by the end of the run; the statuses a
# run cannot produce (500 out of memory, ...) are reported, not required.
REQUIRED_STATUSES = {
    ("/webhooks/intercom", "HEAD", 200),
    ("/webhooks/intercom", "POST", 200), ("/webhooks/intercom", "POST", 400),
    ("/webhooks/intercom", "POST", 401), ("/webhooks/intercom", "POST", 413),
    ("/webhooks/intercom", "POST", 503),
    ("/webhooks/customerio", "POST", 200), ("/webhooks/customerio", "POST", 400),
    ("/webhooks/customerio", "POST", 401), ("/webhooks/customerio", "POST", 413),
    ("/webhooks/customerio", "POST", 503),
    ("/v1/users/{user_id}", "GET", 200), ("/v1/users/{user_id}", "GET", 400),
    ("/v1/users/{user_id}", "GET", 401), ("/v1/users/{user_id}", "GET", 503),
    ("/v1/users/{user_id}/suppression", "GET", 200),
    ("/v1/users/{user_id}/suppression", "GET", 400),
    ("/v1/users/{user_id}/suppression", "GET", 401),
    ("/v1/users/{user_id}/suppression", "GET", 503),
    ("/v1/suppression/check", "POST", 200), ("/v1/suppression/check", "POST", 400),
    ("/v1/suppression/check", "POST", 401), ("/v1/suppression/check", "POST", 413),
    ("/v1/suppression/check", "POST", 503),
    ("/healthz", "GET", 200), ("/healthz", "HEAD", 200),
    ("/readyz", "GET", 200), ("/readyz", "GET", 503),
    ("/readyz", "HEAD", 200), ("/readyz", "HEAD", 503),
    ("/metrics", "GET", 200),
    ("/v1/admin/queue", "GET", 200), ("/v1/admin/queue", "GET", 400),
    ("/v1/admin/queue", "GET", 401), ("/v1/admin/queue", "GET", 503),
    ("/v1/admin/dead-letters", "GET", 200), ("/v1/admin/dead-letters", "GET", 400),
    ("/v1/admin/dead-letters/replay", "POST", 200),
    ("/v1/admin/dead-letters/{dead_letter_id}/replay", "POST", 200),
    ("/v1/admin/dead-letters/{dead_letter_id}/replay", "POST", 404),
    ("/v1/admin/backfill", "GET", 200), ("/v1/admin/backfill", "GET", 400),
    ("/v1/admin/backfill", "GET", 401), ("/v1/admin/backfill", "GET", 503),
    ("/v1/admin/backfill", "POST", 202), ("/v1/admin/backfill", "POST", 400),
    ("/v1/admin/backfill", "POST", 401), ("/v1/admin/backfill", "POST", 409),
    ("/v1/admin/backfill", "POST", 413), ("/v1/admin/backfill", "POST", 503),
}


# --------------------------------------------------------------------------- the document

def pointer_escape(token):
    return str(token).replace("~", "~0").replace("/", "~1")


def resolve_pointer(ref):
    """The object a local reference ("#/a/b") names in SPEC; KeyError when it names none."""
    assert ref.startswith("#"), f"only local references are used: {ref}"
    node = SPEC
    for raw in ref[1:].split("/")[1:]:
        token = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise KeyError(ref)
    return node


def deref(obj, where):
    """Follows OpenAPI-level $refs (responses, parameters, headers). Returns (object,
    JSON pointer of the object)."""
    seen = set()
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        assert ref not in seen, f"$ref loop at {ref}"
        seen.add(ref)
        where = ref
        obj = resolve_pointer(ref)
    return obj, where


def walk(node, where="#"):
    """Yields (pointer, node) for every dict and list in the document."""
    yield where, node
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                yield from walk(v, f"{where}/{pointer_escape(k)}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                yield from walk(v, f"{where}/{i}")


def validator_at(pointer):
    """A 2020-12 validator for the schema at `pointer`, resolving $refs over the whole
    document."""
    schema = {"$ref": SPEC_URI + pointer}
    if Registry is not None:
        resource = Resource.from_contents(SPEC, default_specification=DRAFT202012)
        return Draft202012Validator(schema,
                                    registry=Registry().with_resource(SPEC_URI, resource))
    resolver = RefResolver(base_uri=SPEC_URI, referrer=SPEC, store={SPEC_URI: SPEC})
    return Draft202012Validator(schema, resolver=resolver)


def schema_errors(pointer, instance):
    v = validator_at(pointer)
    return sorted((f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                   for e in v.iter_errors(instance)))


def operations():
    """Yields (template, METHOD, operation, pointer) for every operation."""
    for template, item in SPEC["paths"].items():
        for m in HTTP_METHODS:
            if m in item:
                yield template, m.upper(), item[m], f"#/paths/{pointer_escape(template)}/{m}"


def media_schemas():
    """Yields (pointer of a media type object, media type object) for every request and
    response body the document declares, component responses included."""
    for where, node in walk(SPEC):
        if where.endswith("/content") and isinstance(node, dict):
            for mt, obj in node.items():
                yield f"{where}/{pointer_escape(mt)}", obj


def template_regex(template):
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("^" + "".join("[^/]*" if p.startswith("{") else re.escape(p)
                                    for p in parts) + "$")


TEMPLATES = sorted(SPEC["paths"], key=lambda t: (t.count("{"), -len(t)))
TEMPLATE_RES = [(t, template_regex(t)) for t in TEMPLATES]


def match_template(path):
    """The document's path template for a concrete path (concrete templates first)."""
    for t, rx in TEMPLATE_RES:
        if rx.match(path):
            return t
    return None


def test_document_is_openapi_3_1():
    assert SPEC.get("openapi", "").startswith("3.1."), SPEC.get("openapi")
    assert SPEC.get("jsonSchemaDialect") == "https://json-schema.org/draft/2020-12/schema"
    assert SPEC["info"].get("title") and SPEC["info"].get("version")
    assert SPEC.get("paths"), "no paths"
    known_tags = {t["name"] for t in SPEC.get("tags", [])}
    schemes = SPEC.get("components", {}).get("securitySchemes", {})
    problems = []

    # every $ref resolves
    for where, node in walk(SPEC):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            try:
                resolve_pointer(node["$ref"])
            except (KeyError, IndexError, ValueError):
                problems.append(f"{where}: $ref {node['$ref']} does not resolve")

    op_ids = {}
    for template, item in SPEC["paths"].items():
        assert template.startswith("/"), template
        methods = [m for m in HTTP_METHODS if m in item]
        if not methods:
            problems.append(f"{template}: no operation")
        for m in methods:
            op = item[m]
            name = f"{m.upper()} {template}"
            if not op.get("responses"):
                problems.append(f"{name}: no responses")
            for code, resp in op.get("responses", {}).items():
                if not (isinstance(code, str) and re.fullmatch(r"[1-5](\d\d|XX)|default", code)):
                    problems.append(f"{name}: response key {code!r} is not a status code string")
                resp, _ = deref(resp, "")
                if not resp.get("description"):
                    problems.append(f"{name} {code}: no description")
            oid = op.get("operationId")
            if not oid or oid in op_ids:
                problems.append(f"{name}: operationId {oid!r} missing or not unique")
            op_ids[oid] = name
            for tag in op.get("tags", []):
                if tag not in known_tags:
                    problems.append(f"{name}: tag {tag} is not declared")
            for req in op.get("security", []):
                for scheme in req:
                    if scheme not in schemes:
                        problems.append(f"{name}: security scheme {scheme} is not declared")
            # path parameters: each {x} declared, required, and nothing extra
            params = [deref(p, "")[0] for p in item.get("parameters", []) + op.get("parameters", [])]
            declared = {p["name"] for p in params if p.get("in") == "path"}
            wanted = set(re.findall(r"\{([^}/]+)\}", template))
            if declared != wanted:
                problems.append(f"{name}: path parameters {declared} != template {wanted}")
            for p in params:
                if p.get("in") == "path" and p.get("required") is not True:
                    problems.append(f"{name}: path parameter {p['name']} not required")
                if "schema" not in p and "content" not in p:
                    problems.append(f"{name}: parameter {p.get('name')} has no schema")
            if "requestBody" in op and not deref(op["requestBody"], "")[0].get("content"):
                problems.append(f"{name}: requestBody without content")

    # /v1/* is Bearer-protected, optionally; nothing else is
    for template, method, op, _ in operations():
        sec = op.get("security", SPEC.get("security"))
        if template.startswith("/v1/"):
            if sec is None or {"bearerAuth"} not in [set(s) for s in sec] or {} not in sec:
                problems.append(f"{method} {template}: security must be bearerAuth or none")
        elif sec:
            problems.append(f"{method} {template}: unexpected security {sec}")

    # every schema is a valid JSON Schema 2020-12 document
    for where, node in walk(SPEC):
        if where.endswith("/schema") or re.fullmatch(r"#/components/schemas/[^/]+", where):
            try:
                Draft202012Validator.check_schema(node)
            except Exception as e:  # jsonschema.SchemaError
                problems.append(f"{where}: not a valid 2020-12 schema: {e}")

    assert not problems, "\n".join(problems)


def test_document_examples_match_their_schemas():
    problems = []
    count = 0
    for where, mt in media_schemas():
        if "schema" not in mt:
            problems.append(f"{where}: no schema")
            continue
        samples = []
        if "example" in mt:
            samples.append(("example", mt["example"]))
        for name, ex in mt.get("examples", {}).items():
            ex, _ = deref(ex, "")
            samples.append((f"examples/{name}", ex["value"]))
        if not samples:
            problems.append(f"{where}: no example")
        for label, value in samples:
            count += 1
            for e in schema_errors(f"{where}/schema", value):
                problems.append(f"{where}/{label}: {e}")
    for where, node in walk(SPEC):
        if isinstance(node, dict) and "in" in node and "schema" in node and "example" in node:
            count += 1
            for e in schema_errors(f"{where}/schema", node["example"]):
                problems.append(f"{where}/example: {e}")
    assert count > 20
    assert not problems, "\n".join(problems)


def test_the_contract_s_user_state_example_is_a_user_state():
    """The UserState example in CONTRACT.md validates against UserState."""
    text = (ROOT.parent / "shared" / "CONTRACT.md")
    if not text.exists():
        pytest.skip("CONTRACT.md is not next to the repository")
    blocks = re.findall(r"```json\n(.*?)```", text.read_text(), re.S)
    user_state = [json.loads(b) for b in blocks if '"has_open_ticket"' in b]
    assert user_state, "no user state example in CONTRACT.md"
    assert schema_errors("#/components/schemas/UserState", user_state[0]) == []


# --------------------------------------------------------------------------- the service

SEEN = {}          # (template or None, METHOD, status) -> count
STARTED = set()    # driver tests that ran


def _essence(ctype):
    return (ctype or "").split(";")[0].strip().lower()


def _fail(r, method, path, why):
    body = r.body[:600].decode("utf-8", "replace")
    pytest.fail(f"{method} {path} -> {r.status}: {why}\nbody: {body}", pytrace=False)


def check_answer(method, path, r, request_body=None, request_headers=None,
                 request_conforms=False):
    """Checks one answer against the document; returns the parsed JSON body (or None)."""
    bare = path.split("?", 1)[0]
    template = match_template(bare)
    SEEN[(template, method, r.status)] = SEEN.get((template, method, r.status), 0) + 1

    if template is None:
        if r.status != 404:
            _fail(r, method, path, "a path the document does not list must answer 404")
        resp, where = deref({"$ref": "#/components/responses/NotFound"}, "")
    else:
        item = SPEC["paths"][template]
        documented = {m.upper() for m in HTTP_METHODS if m in item}
        if method.lower() not in item:
            if r.status != 405:
                _fail(r, method, path, f"a method the document does not list for {template} "
                      f"must answer 405 (documented: {sorted(documented)})")
            allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
            if allow != documented:
                _fail(r, method, path, f"Allow {r.headers.get('allow')!r} != the methods the "
                      f"document lists for {template}: {sorted(documented)}")
            resp, where = deref({"$ref": "#/components/responses/MethodNotAllowed"}, "")
        else:
            op = item[method.lower()]
            op_ptr = f"#/paths/{pointer_escape(template)}/{method.lower()}"
            if request_conforms:
                check_request(template, method, op, op_ptr, path, request_body,
                              request_headers or {})
            key = str(r.status)
            if key not in op["responses"]:
                _fail(r, method, path, f"status {r.status} is not documented for {method} "
                      f"{template} (documented: {sorted(op['responses'])})")
            resp, where = deref(op["responses"][key], f"{op_ptr}/responses/{key}")

    for name, h in resp.get("headers", {}).items():
        h, hwhere = deref(h, f"{where}/headers/{pointer_escape(name)}")
        value = r.headers.get(name.lower())
        if value is None:
            if h.get("required"):
                _fail(r, method, path, f"required header {name} is missing")
            continue
        errs = schema_errors(f"{hwhere}/schema", value)
        if errs:
            _fail(r, method, path, f"header {name}: {errs}")

    content = resp.get("content")
    if method == "HEAD" or not content:
        if r.body != b"":
            _fail(r, method, path, "the document declares no body, but there is one")
        return None
    ctype = _essence(r.headers.get("content-type"))
    if ctype not in content:
        _fail(r, method, path, f"Content-Type {r.headers.get('content-type')!r} is not "
              f"one of {sorted(content)}")
    mt_ptr = f"{where}/content/{pointer_escape(ctype)}"
    if ctype == "application/json":
        try:
            doc = json.loads(r.body)
        except ValueError as e:
            _fail(r, method, path, f"body is not JSON: {e}")
    else:
        try:
            doc = r.body.decode("utf-8")
        except UnicodeDecodeError as e:
            _fail(r, method, path, f"body is not UTF-8 text: {e}")
    errs = schema_errors(f"{mt_ptr}/schema", doc)
    if errs:
        _fail(r, method, path, "the body does not match the document's schema for this "
              f"status ({mt_ptr}):\n  " + "\n  ".join(errs))
    return doc


def check_request(template, method, op, op_ptr, path, body, headers):
    """A request the test means to be valid must be valid per the document too."""
    problems = []
    lower = {k.lower(): v for k, v in headers.items()}
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    for i, p in enumerate(op.get("parameters", [])):
        p, pwhere = deref(p, f"{op_ptr}/parameters/{i}")
        if p["in"] == "header":
            value = lower.get(p["name"].lower())
        elif p["in"] == "query":
            value = query.get(p["name"], [None])[0]
            if value is not None and p["schema"].get("type") == "integer":
                value = int(value)
        else:
            continue
        if value is None:
            if p.get("required"):
                problems.append(f"required {p['in']} parameter {p['name']} missing")
            continue
        problems += [f"{p['name']}: {e}" for e in schema_errors(f"{pwhere}/schema", value)]
    if "requestBody" in op:
        rb, rbwhere = deref(op["requestBody"], f"{op_ptr}/requestBody")
        doc = json.loads(body) if isinstance(body, (bytes, str)) else body
        problems += [f"body: {e}" for e in schema_errors(
            f"{rbwhere}/content/application~1json/schema", doc)]
    assert not problems, f"the test's own request to {method} {template} does not " \
        f"match the document: {problems}"


def call(svc, method, path, body=None, headers=None, expect=None, request_conforms=False):
    """One request to the service, its answer checked against the document."""
    raw = body
    if isinstance(body, (dict, list)):
        raw = json.dumps(body).encode()
    r = svc.request(method, path, body=raw, headers=headers)
    doc = check_answer(method, path, r, raw, headers, request_conforms)
    if expect is not None and r.status != expect:
        _fail(r, method, path, f"expected {expect}")
    r.doc = doc
    return r


def webhook(svc, payload, expect=None, secret=None, headers=None):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    h = {"Content-Type": "application/json", "X-Hub-Signature": sign(raw, secret or svc.secret)}
    h.update(headers or {})
    return call(svc, "POST", "/webhooks/intercom", raw, h, expect=expect,
                request_conforms=expect == 200)


def uid_path(user_id, suffix=""):
    return "/v1/users/" + urllib.parse.quote(user_id, safe="") + suffix


def cio_sign(body, timestamp, key=CIO_KEY):
    return hmac.new(key.encode(), b"v0:" + timestamp.encode() + b":" + body,
                    hashlib.sha256).hexdigest()


def cio_event(event_id="01JH7Z8X2M3R4S5T6V7W8X9Y0Z"):
    return {"event_id": event_id, "object_type": "email", "metric": "opened",
            "timestamp": int(time.time()),
            "data": {"identifiers": {"id": "u-openapi-cio"}, "customer_id": "u-openapi-cio",
                     "campaign_id": 12, "delivery_id": "RPILAgABlHhmFDXvfv6M2S0i",
                     "subject": "Your renewal"}}


@pytest.fixture
def driver(request):
    STARTED.add(request.node.name)


@pytest.fixture
def own_redis():
    """A Redis of the test's own. The session's default service shares the session Redis
    and runs an Intercom worker (in dry run) on it: it would take the Intercom jobs a test
    means for its own service."""
    r = Redis().start()
    yield r
    r.stop()


# --------------------------------------------------------------------------- operations

def test_operations_endpoints(svc, driver):
    assert call(svc, "GET", "/healthz", expect=200).doc == {"status": "ok"}
    call(svc, "HEAD", "/healthz", expect=200)
    ready = call(svc, "GET", "/readyz", expect=200).doc
    assert ready["checks"]["customerio"] == "dry_run", ready  # no CIO credentials here
    assert ready["checks"]["intercom"] == "dry_run", ready    # nor an Intercom token
    call(svc, "HEAD", "/readyz", expect=200)
    text = call(svc, "GET", "/metrics", expect=200).doc
    assert "# TYPE suppressd_http_requests_total counter" in text, text[:500]


# --------------------------------------------------------------------------- query API

def _busy_user(svc, user, contact, now):
    """Two open tickets (a priority conversation rated 2, a ticket), a churn tag."""
    conv, tick = "880000000000001", "880000000000002"
    webhook(svc, payloads.conversation(
        topic="conversation.rating.added", conv_id=conv, users=[(contact, user)],
        state="open", created_at=now - 600, updated_at=now - 120, priority=True,
        rating=(2, now - 120), event_at=now - 120), expect=200)
    webhook(svc, payloads.ticket(topic="ticket.created", ticket_id=tick,
                                 users=[(contact, user)], category="submitted",
                                 created_at=now - 500, updated_at=now - 400), expect=200)
    webhook(svc, payloads.contact_tag(contact_id=contact, external_id=user, tag="churn-risk",
                                      event_at=now - 60), expect=200)
    return conv, tick


def assert_consistent_state(u):
    assert u["open_ticket_count"] == len(u["open_tickets"]), u
    assert u["has_open_ticket"] is (u["open_ticket_count"] > 0), u
    assert set(u["suppressed"]) == set(DEFAULT_CAMPAIGNS), u


def test_user_state_suppression_and_check(svc, driver):
    now = int(time.time())
    empty = call(svc, "GET", uid_path("u-openapi-never-seen"), expect=200,
                 request_conforms=True).doc
    assert_consistent_state(empty)
    assert empty == {"user_id": "u-openapi-never-seen", "has_open_ticket": False,
                     "open_ticket_count": 0, "open_tickets": [], "churn_risk": False,
                     "churn_risk_at": None, "last_csat": None,
                     "suppressed": {c: False for c in DEFAULT_CAMPAIGNS},
                     "updated_at": None}

    user = "u-openapi busy+1@example.com"   # reserved characters, percent-encoded
    conv, tick = _busy_user(svc, user, "cid-openapi-busy", now)
    busy = call(svc, "GET", uid_path(user), expect=200, request_conforms=True).doc
    assert_consistent_state(busy)
    assert busy["user_id"] == user
    assert busy["open_ticket_count"] == 2, busy
    by_id = {t["id"]: t for t in busy["open_tickets"]}
    assert set(by_id) == {conv, tick}, busy
    assert by_id[conv]["kind"] == "conversation" and by_id[conv]["priority"] is True, busy
    assert by_id[tick]["kind"] == "ticket", busy
    assert by_id[conv]["opened_at"] == now - 600, busy
    assert busy["churn_risk"] is True and busy["churn_risk_at"] == now - 60, busy
    assert busy["last_csat"] == {"score": 2, "at": now - 120, "ticket_id": conv}, busy
    assert busy["suppressed"] == {c: True for c in DEFAULT_CAMPAIGNS}, busy
    assert isinstance(busy["updated_at"], int) and busy["updated_at"] >= now - 600, busy

    # a snoozed conversation shows as state "snoozed"
    webhook(svc, payloads.conversation(conv_id="880000000000003",
                                       users=[("cid-openapi-snz", "u-openapi-snoozed")],
                                       state="snoozed", created_at=now - 100,
                                       updated_at=now - 50), expect=200)
    snoozed = call(svc, "GET", uid_path("u-openapi-snoozed"), expect=200).doc
    assert_consistent_state(snoozed)
    assert [t["state"] for t in snoozed["open_tickets"]] == ["snoozed"], snoozed

    expected = {"commercial": ["open_ticket"],
                "expansion": ["open_ticket", "recent_priority_ticket"],
                "renewal": ["open_ticket", "low_csat"],
                "feature_adoption": ["churn_risk"]}
    for campaign, reasons in expected.items():
        v = call(svc, "GET", uid_path(user, "/suppression?campaign=" + campaign), expect=200,
                 request_conforms=True).doc
        assert v == {"user_id": user, "campaign": campaign, "suppressed": True,
                     "reasons": reasons}, v
        clear = call(svc, "GET", uid_path("u-openapi-never-seen", "/suppression?campaign=" +
                                          campaign), expect=200).doc
        assert clear["suppressed"] is False and clear["reasons"] == [], clear

        ids = ["u-openapi-never-seen", user, "u-openapi-snoozed", user]
        res = call(svc, "POST", "/v1/suppression/check", {"campaign": campaign, "user_ids": ids},
                   {"Content-Type": "application/json"}, expect=200,
                   request_conforms=True).doc
        assert res["campaign"] == campaign
        assert [x["user_id"] for x in res["results"]] == ids, res
        assert res["results"][0] == {"user_id": ids[0], "suppressed": False, "reasons": []}
        assert res["results"][1] == {"user_id": user, "suppressed": True, "reasons": reasons}
        assert res["results"][3] == res["results"][1]
        assert res["results"][2]["suppressed"] is (campaign != "feature_adoption"), res

    # the largest batch the document allows
    ids = [f"u-openapi-{i}" for i in range(999)] + [user]
    res = call(svc, "POST", "/v1/suppression/check", {"campaign": "renewal", "user_ids": ids},
               expect=200, request_conforms=True).doc
    assert len(res["results"]) == 1000 and res["results"][-1]["suppressed"] is True


def test_query_errors(svc, driver):
    def err(method, path, status, code, body=None):
        r = call(svc, method, path, body, {"Content-Type": "application/json"}, expect=status)
        assert r.doc["error"] == code, r.doc
        return r.doc

    for bad in ("x" * 257, "%FF%FE", "a%00b", ""):
        err("GET", "/v1/users/" + bad, 400, "invalid_user_id")
        err("GET", "/v1/users/" + bad + "/suppression?campaign=renewal", 400, "invalid_user_id")
    err("GET", uid_path("u-1", "/suppression"), 400, "invalid_request")
    err("GET", uid_path("u-1", "/suppression?campaign="), 400, "invalid_request")
    err("GET", uid_path("u-1", "/suppression?campaign=winback"), 400, "unknown_campaign")

    check = "/v1/suppression/check"
    err("POST", check, 400, "invalid_json", b"{not json")
    err("POST", check, 400, "invalid_json", b"")
    err("POST", check, 400, "invalid_request", [])
    err("POST", check, 400, "invalid_request", {"user_ids": ["u-1"]})
    err("POST", check, 400, "invalid_request", {"campaign": 7, "user_ids": ["u-1"]})
    err("POST", check, 400, "unknown_campaign", {"campaign": "winback", "user_ids": ["u-1"]})
    err("POST", check, 400, "invalid_request", {"campaign": "renewal"})
    err("POST", check, 400, "invalid_request", {"campaign": "renewal", "user_ids": "u-1"})
    err("POST", check, 400, "invalid_request", {"campaign": "renewal", "user_ids": []})
    err("POST", check, 400, "invalid_request",
        {"campaign": "renewal", "user_ids": [f"u-{i}" for i in range(1001)]})
    err("POST", check, 400, "invalid_request", {"campaign": "renewal", "user_ids": ["u-1", 2]})
    err("POST", check, 400, "invalid_user_id", {"campaign": "renewal", "user_ids": ["u-1", ""]})
    err("POST", check, 400, "invalid_user_id",
        {"campaign": "renewal", "user_ids": ["u-1", "x" * 257]})
    # JSON text may not carry \u0000 at all (the parser refuses it before any id check)
    err("POST", check, 400, "invalid_json", {"campaign": "renewal", "user_ids": ["a\u0000b"]})

    # paths the document does not list
    for path in ("/", "/nope", "/v1", "/v1/", "/v1/users", "/v1/users/u-1/other",
                 "/v1/users/u-1/suppression/x", "/v1/suppression", "/webhooks",
                 "/webhooks/intercom/x", "/healthz/x", "/v2/users/u-1"):
        err("GET", path, 404, "not_found")


def test_unlisted_methods_answer_405_with_the_documented_allow(svc, driver):
    """For every path: every method the document does not list answers 405, and Allow
    names exactly the listed ones (checked in check_answer)."""
    concrete = {"{user_id}": "u-openapi-405", "{dead_letter_id}": "1-0"}
    for template, item in SPEC["paths"].items():
        path = template
        for k, v in concrete.items():
            path = path.replace(k, v)
        for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            if m.lower() in item:
                continue
            r = call(svc, m, path, b"{}" if m in ("POST", "PUT", "PATCH") else None)
            assert r.status == 405, (m, path, r)


# --------------------------------------------------------------------------- webhooks

def test_intercom_webhook_statuses(svc, driver):
    now = int(time.time())
    r = call(svc, "HEAD", "/webhooks/intercom", expect=200)
    assert r.body == b""

    doc = payloads.conversation(conv_id="881000000000001", users=[("cid-oa-wh", "u-oa-wh")],
                                state="open", created_at=now - 100, updated_at=now - 50)
    assert webhook(svc, doc, expect=200).doc == {"status": "recorded"}
    assert webhook(svc, doc, expect=200).doc == {"status": "duplicate"}
    assert webhook(svc, payloads.ping(), expect=200).doc == {"status": "ignored"}
    other = payloads.ping()
    other["topic"] = "company.created"
    assert webhook(svc, other, expect=200).doc == {"status": "ignored"}
    # an older delivery of the same ticket changes nothing, and is still 200
    stale = payloads.conversation(conv_id="881000000000001", users=[("cid-oa-wh", "u-oa-wh")],
                                  state="closed", created_at=now - 100, updated_at=now - 80)
    assert webhook(svc, stale, expect=200).doc["status"] in ("recorded", "duplicate")
    assert call(svc, "GET", "/v1/users/u-oa-wh", expect=200).doc["open_ticket_count"] == 1

    # 400: not a notification
    for body in (b"not json", b"[]", b'{"type":"other","topic":"ping","data":{"item":{}}}',
                 json.dumps({"type": "notification_event", "topic": "ping"}).encode(), b""):
        r = webhook(svc, body, expect=400)
        assert r.doc["error"] == "invalid_notification", r.doc

    # 401: missing, malformed, wrong
    raw = json.dumps(payloads.ping()).encode()
    base = {"Content-Type": "application/json"}
    for h in ({}, {"X-Hub-Signature": "sha1=xyz"}, {"X-Hub-Signature": sign(raw, "other")},
              {"X-Hub-Signature": sign(raw + b" ")}):
        r = call(svc, "POST", "/webhooks/intercom", raw, {**base, **h}, expect=401)
        assert r.doc["error"] == "invalid_signature", r.doc


def test_every_post_answers_413_over_1_mib(svc, driver):
    """The body limit is the HTTP layer's: every POST operation lists 413 and answers it."""
    big = b'{"pad":"' + b"x" * ONE_MIB + b'"}'
    concrete = {"{user_id}": "u-openapi-413", "{dead_letter_id}": "1-0"}
    posts = [t for t, m, _, _ in operations() if m == "POST"]
    assert "/webhooks/intercom" in posts and "/v1/suppression/check" in posts
    for template in posts:
        path = template
        for k, v in concrete.items():
            path = path.replace(k, v)
        try:
            r = call(svc, "POST", path, big, {"Content-Type": "application/json",
                                               "X-Hub-Signature": sign(big)}, expect=413)
        except (ConnectionResetError, BrokenPipeError) as e:
            pytest.fail(f"POST {path}: connection reset instead of a 413 answer ({e})")
        assert r.doc["error"] == "payload_too_large", r.doc
    # exactly 1 MiB is not over the limit
    exact = b'{"pad":"' + b"x" * (ONE_MIB - 10) + b'"}'
    assert len(exact) == ONE_MIB
    call(svc, "POST", "/v1/suppression/check", exact, expect=400)


def test_intercom_webhook_without_client_secret_is_503(make_service, driver):
    s = make_service(secret=None)
    r = call(s, "POST", "/webhooks/intercom", json.dumps(payloads.ping()).encode(),
             {"Content-Type": "application/json", "X-Hub-Signature": sign(b"x")}, expect=503)
    assert r.doc["error"] == "not_configured", r.doc
    call(s, "HEAD", "/webhooks/intercom", expect=200)


def post_cio(s, doc, ts=None, key=CIO_KEY, expect=None, request_conforms=False):
    """Signs and posts one Customer.io reporting webhook (dict or raw bytes)."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    ts = str(int(time.time()) if ts is None else ts)
    headers = {"Content-Type": "application/json", "X-CIO-Timestamp": ts,
               "X-CIO-Signature": cio_sign(body, ts, key)}
    return call(s, "POST", "/webhooks/customerio", body, headers, expect=expect,
                request_conforms=request_conforms)


def test_customerio_webhook_unconfigured_and_bad_signatures(svc, make_service, driver):
    body = json.dumps(cio_event()).encode()
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-CIO-Timestamp": ts,
               "X-CIO-Signature": cio_sign(body, ts)}
    r = call(svc, "POST", "/webhooks/customerio", body, headers, expect=503)
    assert r.doc["error"] == "not_configured", r.doc

    s = make_service(env={"CIO_WEBHOOK_SIGNING_KEY": CIO_KEY})
    for h in ({"X-CIO-Timestamp": ts},
              {"X-CIO-Signature": cio_sign(body, ts)},
              {"X-CIO-Timestamp": ts, "X-CIO-Signature": "deadbeef"},
              {"X-CIO-Timestamp": ts, "X-CIO-Signature": cio_sign(body, ts, key="other")},
              {"X-CIO-Timestamp": str(int(ts) + 1), "X-CIO-Signature": cio_sign(body, ts)}):
        r = call(s, "POST", "/webhooks/customerio", body,
                 {"Content-Type": "application/json", **h}, expect=401)
        assert r.doc["error"] == "invalid_signature", r.doc
    # the signature is checked before the body: a bad signature on a bad body is a 401
    r = call(s, "POST", "/webhooks/customerio", b"not json",
             {"Content-Type": "application/json", "X-CIO-Timestamp": ts,
              "X-CIO-Signature": cio_sign(b"other", ts)}, expect=401)
    assert r.doc["error"] == "invalid_signature", r.doc


def test_customerio_webhook_timestamp_age(make_service, driver):
    """With CIO_WEBHOOK_MAX_AGE, a validly signed request whose timestamp is too far from
    now, either way, answers 401 stale_timestamp; without it, the age is not checked."""
    now = int(time.time())
    s = make_service(env={"CIO_WEBHOOK_SIGNING_KEY": CIO_KEY, "CIO_WEBHOOK_MAX_AGE": "300"})
    for i, ts in enumerate((now - 3600, now + 3600)):
        r = post_cio(s, cio_event(f"01JH7Z8X2M3R4S5T6V7W8X9S{i:02d}"), ts=ts, expect=401)
        assert r.doc["error"] == "stale_timestamp", r.doc
    # a bad signature is still invalid_signature, whatever the timestamp
    r = post_cio(s, cio_event("01JH7Z8X2M3R4S5T6V7W8X9S10"), ts=now - 3600, key="other",
                 expect=401)
    assert r.doc["error"] == "invalid_signature", r.doc
    r = post_cio(s, cio_event("01JH7Z8X2M3R4S5T6V7W8X9S11"), ts=now - 30, expect=200,
                 request_conforms=True)
    assert r.doc == {"status": "queued"}, r.doc

    unchecked = make_service(env={"CIO_WEBHOOK_SIGNING_KEY": CIO_KEY})
    r = post_cio(unchecked, cio_event("01JH7Z8X2M3R4S5T6V7W8X9S12"), ts=now - 30 * 86400,
                 expect=200, request_conforms=True)
    assert r.doc == {"status": "queued"}, r.doc


def test_customerio_webhook_signed_is_accepted(own_redis, make_service, driver):
    """CONTRACT.md: POST /webhooks/customerio answers 200 once queued (duplicates by
    event_id too). A validly signed webhook must not be refused."""
    s = make_service(env={"CIO_WEBHOOK_SIGNING_KEY": CIO_KEY}, redis_url=own_redis.url)
    first = post_cio(s, cio_event(), expect=200, request_conforms=True)
    assert first.doc == {"status": "queued"}, first.doc
    again = post_cio(s, cio_event(), expect=200, request_conforms=True)
    assert again.doc == {"status": "duplicate"}, again.doc
    # queued means forwarded: in dry run the Intercom request is logged
    wait_for(lambda: any(line.get("msg") == "intercom_dry_run" and
                         (line.get("body") or {}).get("event_name") == "cio_email_opened" and
                         line["body"].get("user_id") == "u-openapi-cio"
                         for line in s.log_lines()),
             timeout=15, what="the forwarded event (intercom_dry_run)")

    # acknowledged, not forwarded: a metric not in SUPPRESS_CIO_EVENTS, no identifiers.id
    spam = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y1A")
    spam["metric"] = "spammed"
    r = post_cio(s, spam, expect=200, request_conforms=True)
    assert r.doc["status"] == "ignored" and "email_spammed" in r.doc["reason"], r.doc
    anonymous = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y1B")
    anonymous["data"]["identifiers"] = {"email": "ada@example.com", "cio_id": "d9c106000001"}
    r = post_cio(s, anonymous, expect=200, request_conforms=True)
    assert r.doc["status"] == "ignored" and "identifiers.id" in r.doc["reason"], r.doc
    nobody = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y1C")
    del nobody["data"]["identifiers"]
    r = post_cio(s, nobody, expect=200, request_conforms=True)
    assert r.doc["status"] == "ignored", r.doc
    # an integer id is a person too
    numeric = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y1D")
    numeric["data"]["identifiers"] = {"id": 42}
    assert post_cio(s, numeric, expect=200, request_conforms=True).doc == {"status": "queued"}

    # 400 invalid_event: signed, but not a reporting webhook
    def broken(**change):
        """cio_event() with members replaced (KeyError: removed)."""
        doc = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y2A")
        for k, v in change.items():
            if v is KeyError:
                doc.pop(k)
            else:
                doc[k] = v
        return doc

    for body in (b"not json", b"", b"[]", b'"event"',
                 broken(event_id=KeyError), broken(event_id=""), broken(event_id=7),
                 broken(event_id="x" * 128), broken(object_type=KeyError),
                 broken(metric=""), broken(timestamp="1768032534"), broken(timestamp=0),
                 broken(timestamp=1.5), broken(data=KeyError), broken(data=[]),
                 broken(data={"identifiers": "u-1"})):
        r = post_cio(s, body, expect=400)
        assert r.doc["error"] == "invalid_event", (body, r.doc)


# --------------------------------------------------------------------------- auth

def _v1_requests():
    """One well-formed request per /v1 operation: (METHOD, path, body)."""
    return [
        ("GET", "/v1/users/u-openapi-auth", None),
        ("GET", "/v1/users/u-openapi-auth/suppression?campaign=renewal", None),
        ("POST", "/v1/suppression/check", {"campaign": "renewal", "user_ids": ["u-openapi-auth"]}),
        ("GET", "/v1/admin/queue", None),
        ("GET", "/v1/admin/dead-letters", None),
        ("POST", "/v1/admin/dead-letters/replay", None),
        ("POST", "/v1/admin/dead-letters/1-0/replay", None),
        ("POST", "/v1/admin/users/u-openapi-auth/resync", None),
        ("GET", "/v1/admin/backfill", None),
        ("POST", "/v1/admin/backfill", None),
    ]


def _v1_expected(method, path):
    """(status, error code) a well-formed /v1 request gets from a service with the state
    store up and no Intercom token: 200, except the one id that names no dead letter (its
    documented 404) and a backfill, which needs a token (409 not_configured)."""
    if "/dead-letters/1-0/" in path:
        return 404, "not_found"
    if method == "POST" and path == "/v1/admin/backfill":
        return 409, "not_configured"
    return 200, None


def test_v1_requests_cover_every_v1_operation():
    covered = {(match_template(p.split("?")[0]), m) for m, p, _ in _v1_requests()}
    wanted = {(t, m) for t, m, _, _ in operations() if t.startswith("/v1/")}
    assert covered == wanted


def test_api_tokens(make_service, driver):
    s = make_service(env={"SUPPRESS_API_TOKENS": ",".join(TOKENS)})
    for method, path, body in _v1_requests():
        for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKENS[0]},
                  {"Authorization": "Bearer " + TOKENS[0] + "x"}):
            r = call(s, method, path, body, h, expect=401)
            assert r.doc["error"] == "unauthorized", r.doc
        for tok in TOKENS:
            r = call(s, method, path, body, {"Authorization": "Bearer " + tok},
                     request_conforms=True)
            want, code = _v1_expected(method, path)
            assert r.status == want, (method, path, r)
            assert code is None or r.doc["error"] == code, (method, path, r.doc)
    # the rest of the service is not behind the tokens
    call(s, "GET", "/healthz", expect=200)
    call(s, "GET", "/readyz", expect=200)
    call(s, "GET", "/metrics", expect=200)


# --------------------------------------------------------------------------- admin

def test_admin_api(svc, redis, driver):
    stats = call(svc, "GET", "/v1/admin/queue", expect=200, request_conforms=True).doc
    # without ?destination, both destinations
    assert set(stats["destinations"]) == {"customerio", "intercom"}, stats
    assert stats["destinations"]["customerio"]["dead_letters"] == 0, stats
    assert stats["destinations"]["intercom"]["dead_letters"] == 0, stats
    assert stats["destinations"]["intercom"]["status"] == "dry_run", stats
    for dest in ("customerio", "intercom"):
        one = call(svc, "GET", "/v1/admin/queue?destination=" + dest, expect=200,
                   request_conforms=True).doc
        assert set(one["destinations"]) == {dest}, one
    page = call(svc, "GET", "/v1/admin/dead-letters", expect=200, request_conforms=True).doc
    assert page == {"items": [], "next_cursor": None}
    page = call(svc, "GET", "/v1/admin/dead-letters?destination=intercom", expect=200,
                request_conforms=True).doc
    assert page == {"items": [], "next_cursor": None}

    # dead letters as the sync worker writes them (svc_sync.c / state_outbox.c)
    ids = []
    for i, kind in enumerate(("identify", "event")):
        ids.append(redis.cmd("XADD", "sd:{dlq}:customerio", "*", "user_id", f"u-oa-dl{i}",
                             "kind", kind, "reason", "rejected", "status", "400",
                             "response", '{"meta":{"error":"bad"}}', "payload", "{}",
                             "record", "", "at", str(int(time.time() * 1000))))
    first = call(svc, "GET", "/v1/admin/dead-letters?limit=1", expect=200,
                 request_conforms=True).doc
    assert [x["id"] for x in first["items"]] == [ids[1]] and first["next_cursor"] == ids[1]
    second = call(svc, "GET", "/v1/admin/dead-letters?limit=1&cursor=" + first["next_cursor"] +
                  "&destination=customerio", expect=200, request_conforms=True).doc
    assert [x["id"] for x in second["items"]] == [ids[0]] and second["next_cursor"] is None
    assert call(svc, "GET", "/v1/admin/queue", expect=200).doc[
        "destinations"]["customerio"]["dead_letters"] == 2

    assert call(svc, "POST", f"/v1/admin/dead-letters/{ids[0]}/replay", expect=200,
                request_conforms=True).doc == {"replayed": 1}
    r = call(svc, "POST", f"/v1/admin/dead-letters/{ids[0]}/replay", expect=404)
    assert r.doc["error"] == "not_found"
    assert call(svc, "POST", "/v1/admin/dead-letters/replay", expect=200,
                request_conforms=True).doc == {"replayed": 1}
    assert call(svc, "POST", "/v1/admin/dead-letters/replay", expect=200).doc == {"replayed": 0}
    assert call(svc, "POST", "/v1/admin/users/u-oa-resync/resync", expect=200,
                request_conforms=True).doc == {"queued": True}

    # Intercom dead letters as the Intercom worker writes them (svc_intercom.c job_report):
    # the record is the job's, plus its id
    now_ms = int(time.time() * 1000)
    event = {"event_name": "cio_email_opened", "created_at": int(time.time()),
             "user_id": "u-oa-ic0", "metadata": {"campaign_id": 12}}
    jobs = (("u-oa-ic0", "event", "unknown_user", 404, json.dumps(event),
             {"t": "event", "event": event, "job": "e:01JH7Z8X2M3R4S5T6V7W8X9IC0"}),
            ("intercom:c-oa-ic1", "lookup", "rejected: HTTP 400", 400,
             "https://api.intercom.io/contacts/c-oa-ic1",
             {"t": "lookup", "contact": "c-oa-ic1", "job": "l:c-oa-ic1"}),
            ("", "reconcile", "retries_exhausted", 0,
             "https://api.intercom.io/conversations/881000000000009",
             {"t": "reconcile", "ticket": "881000000000009", "kind": "c",
              "job": "r:881000000000009"}))
    ic_ids = []
    for uid, kind, reason, status, payload, record in jobs:
        ic_ids.append(redis.cmd("XADD", "sd:{dlq}:intercom", "*", "user_id", uid, "kind", kind,
                                "reason", reason, "status", str(status), "response", "",
                                "payload", payload, "record", json.dumps(record),
                                "at", str(now_ms)))
    page = call(svc, "GET", "/v1/admin/dead-letters?destination=intercom&limit=2", expect=200,
                request_conforms=True).doc
    assert [x["id"] for x in page["items"]] == ic_ids[:0:-1], page
    assert [x["kind"] for x in page["items"]] == ["reconcile", "lookup"], page
    assert {x["destination"] for x in page["items"]} == {"intercom"}, page
    rest = call(svc, "GET", "/v1/admin/dead-letters?destination=intercom&limit=2&cursor=" +
                page["next_cursor"], expect=200, request_conforms=True).doc
    assert [x["kind"] for x in rest["items"]] == ["event"] and rest["next_cursor"] is None, rest
    # the destinations' dead letters are apart
    assert call(svc, "GET", "/v1/admin/dead-letters", expect=200).doc["items"] == []
    assert call(svc, "GET", "/v1/admin/queue?destination=intercom", expect=200).doc[
        "destinations"]["intercom"]["dead_letters"] == 3
    r = call(svc, "POST", f"/v1/admin/dead-letters/{ic_ids[0]}/replay", expect=404)
    assert r.doc["error"] == "not_found"   # it is an Intercom one
    assert call(svc, "POST", f"/v1/admin/dead-letters/{ic_ids[0]}/replay?destination=intercom",
                expect=200, request_conforms=True).doc == {"replayed": 1}
    assert call(svc, "POST", "/v1/admin/dead-letters/replay?destination=intercom", expect=200,
                request_conforms=True).doc == {"replayed": 2}
    assert call(svc, "GET", "/v1/admin/queue?destination=intercom", expect=200).doc[
        "destinations"]["intercom"]["dead_letters"] == 0

    for method, path, code in (
            ("GET", "/v1/admin/queue?destination=x", "unknown_destination"),
            ("GET", "/v1/admin/queue?destination=Intercom", "unknown_destination"),
            ("GET", "/v1/admin/queue?destination", "invalid_request"),
            ("GET", "/v1/admin/dead-letters?destination=", "unknown_destination"),
            ("GET", "/v1/admin/dead-letters?limit=0", "invalid_request"),
            ("GET", "/v1/admin/dead-letters?limit=501", "invalid_request"),
            ("GET", "/v1/admin/dead-letters?cursor=abc", "invalid_request"),
            ("POST", "/v1/admin/dead-letters/replay?destination=x", "unknown_destination"),
            ("POST", "/v1/admin/dead-letters/1-0/replay?destination=x", "unknown_destination"),
            ("POST", "/v1/admin/users/u-oa-resync/resync?destination=x", "unknown_destination"),
            ("POST", "/v1/admin/users/intercom%3A123/resync", "invalid_user_id"),
            ("POST", "/v1/admin/users/%FF/resync", "invalid_user_id"),
            ("GET", "/v1/admin/backfill?destination=x", "unknown_destination"),
            ("POST", "/v1/admin/backfill?destination=x", "unknown_destination"),
            ("POST", "/v1/admin/backfill?restart", "invalid_request")):
        assert call(svc, method, path, expect=400).doc["error"] == code, (method, path)
    for path in ("/v1/admin/dead-letters/abc/replay", "/v1/admin/dead-letters/1-0/replay"):
        assert call(svc, "POST", path, expect=404).doc["error"] == "not_found"
    assert call(svc, "GET", "/v1/admin/nothing", expect=404).doc["error"] == "not_found"


# --------------------------------------------------------------------------- backfill

def test_backfill_without_intercom_token(svc, driver):
    """No INTERCOM_ACCESS_TOKEN: nothing ever ran, and nothing can start (409)."""
    status = call(svc, "GET", "/v1/admin/backfill", expect=200, request_conforms=True).doc
    assert status == {"status": "never_run"}, status
    for path in ("/v1/admin/backfill", "/v1/admin/backfill?restart=1"):
        r = call(svc, "POST", path, expect=409, request_conforms=True)
        assert r.doc["error"] == "not_configured", r.doc
    assert call(svc, "GET", "/v1/admin/backfill", expect=200).doc == {"status": "never_run"}


@pytest.fixture
def isim():
    s = IntercomSim(token=INTERCOM_TOKEN).start()
    yield s
    s.stop()


def _backfill_status(s):
    return call(s, "GET", "/v1/admin/backfill", expect=200).doc


def _backfill_ended(s, want):
    wait_for(lambda: _backfill_status(s)["status"] in ("done", "failed"), timeout=30,
             what="the backfill to end")
    status = _backfill_status(s)
    assert status["status"] == want, status
    return status


def test_backfill_with_intercom(own_redis, isim, make_service, driver):
    """A backfill against an Intercom simulator: 202 once started, 409 while it runs, its
    progress while running, done and failed; every answer checked against the document."""
    now = int(time.time())
    for i in range(3):
        isim.add_contact(f"c-oa-bf{i}", external_id=f"u-oa-bf{i}")
        isim.add_conversation(f"c-oa-bf{i}", state="open", created_at=now - 600 + i,
                              updated_at=now - 500 + i)
    isim.add_ticket("c-oa-bf0", category="in_progress", created_at=now - 400,
                    updated_at=now - 300)
    isim.add_ticket("c-oa-bf1", category="resolved", created_at=now - 400,
                    updated_at=now - 300)               # not open: not recorded
    s = make_service(env={"INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN,
                          "INTERCOM_API_URL": isim.url}, redis_url=own_redis.url)
    ready = call(s, "GET", "/readyz", expect=200).doc
    assert ready["checks"]["intercom"] == "live", ready
    assert _backfill_status(s) == {"status": "never_run"}

    # the first search answers late: the run holds the lock meanwhile
    isim.delay_next(2, path_prefix="/conversations/search")
    r = call(s, "POST", "/v1/admin/backfill", expect=202, request_conforms=True)
    assert r.doc == {"status": "started"}, r.doc
    r = call(s, "POST", "/v1/admin/backfill", expect=409, request_conforms=True)
    assert r.doc["error"] == "backfill_running", r.doc
    running = _backfill_status(s)
    assert running["status"] == "running" and running["owner"], running
    done = _backfill_ended(s, "done")
    assert done["records"] == 4 and done["pages"] == 2, done
    assert done["completed_at"] >= now and done["updated_at"] >= now, done
    assert not {"conversations_cursor", "tickets_cursor", "conversations_done",
                "tickets_done", "error"} & set(done), done
    assert call(s, "GET", "/v1/users/u-oa-bf0", expect=200).doc["open_ticket_count"] == 2
    assert call(s, "GET", "/v1/users/u-oa-bf1", expect=200).doc["open_ticket_count"] == 1

    # Intercom refuses the search: the run fails, and says why
    isim.fail_next(1, status=400, path_prefix="/conversations/search")
    r = call(s, "POST", "/v1/admin/backfill?restart=1", expect=202, request_conforms=True)
    assert r.doc == {"status": "started"}, r.doc
    failed = _backfill_ended(s, "failed")
    assert "HTTP 400" in failed["error"], failed
    # the next run resumes and completes (and clears the error)
    call(s, "POST", "/v1/admin/backfill", expect=202, request_conforms=True)
    done = _backfill_ended(s, "done")
    assert "error" not in done, done

    # the state store refuses the lock (out of memory): 503 backfill_failed, nothing started
    own_redis.cmd("CONFIG", "SET", "maxmemory", "1")
    try:
        r = call(s, "POST", "/v1/admin/backfill", expect=503, request_conforms=True)
        assert r.doc["error"] == "backfill_failed", r.doc
    finally:
        own_redis.cmd("CONFIG", "SET", "maxmemory", "0")
    assert _backfill_status(s)["status"] == "done"


def test_intercom_dead_letters_from_the_worker(own_redis, isim, make_service, driver):
    """A Customer.io event for a person Intercom does not know is dead-lettered by the
    Intercom worker itself (404 unknown_user); the real entry matches the document."""
    s = make_service(env={"INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN, "INTERCOM_API_URL": isim.url,
                          "CIO_WEBHOOK_SIGNING_KEY": CIO_KEY}, redis_url=own_redis.url)
    assert post_cio(s, cio_event(), expect=200).doc == {"status": "queued"}
    wait_for(lambda: call(s, "GET", "/v1/admin/dead-letters?destination=intercom",
                          expect=200).doc["items"], timeout=20, what="the dead letter")
    page = call(s, "GET", "/v1/admin/dead-letters?destination=intercom", expect=200,
                request_conforms=True).doc
    [dl] = page["items"]
    assert dl["destination"] == "intercom" and dl["kind"] == "event", dl
    assert dl["user_id"] == "u-openapi-cio" and dl["status"] == 404, dl
    assert json.loads(dl["payload"])["event_name"] == "cio_email_opened", dl
    stats = call(s, "GET", "/v1/admin/queue?destination=intercom", expect=200,
                 request_conforms=True).doc
    assert stats["destinations"]["intercom"]["dead_letters"] == 1, stats
    assert stats["destinations"]["intercom"]["status"] == "live", stats
    # once Intercom knows the person, the replayed event goes through
    isim.add_contact("c-oa-cio", external_id="u-openapi-cio")
    assert call(s, "POST", f"/v1/admin/dead-letters/{dl['id']}/replay?destination=intercom",
                expect=200, request_conforms=True).doc == {"replayed": 1}
    wait_for(lambda: isim.events_for(user_id="u-openapi-cio"), timeout=20,
             what="the replayed event")


# --------------------------------------------------------------------------- store down

def test_state_store_unavailable(make_service, driver):
    own = Redis().start()
    try:
        s = make_service(redis_url=own.url, env={"CIO_WEBHOOK_SIGNING_KEY": CIO_KEY})
        own.kill()
        wait_for(lambda: s.get("/readyz").status == 503, timeout=5, what="/readyz 503")
        nr = call(s, "GET", "/readyz", expect=503).doc
        assert nr["checks"]["redis"] != "ready", nr
        call(s, "HEAD", "/readyz", expect=503)
        call(s, "GET", "/healthz", expect=200)
        for method, path, body in _v1_requests():
            r = call(s, method, path, body)
            if method == "POST" and path == "/v1/admin/backfill":
                # without an Intercom token there is nothing to start, store or not
                assert r.status == 409 and r.doc["error"] == "not_configured", (path, r)
                continue
            assert r.status == 503 and r.doc["error"] == "unavailable", (method, path, r)
        now = int(time.time())
        r = webhook(s, payloads.conversation(conv_id="882000000000001", state="open",
                                             created_at=now - 10, updated_at=now - 5),
                    expect=503)
        assert r.doc["error"] == "unavailable", r.doc
        # a ping records nothing, so it needs no store
        assert webhook(s, payloads.ping(), expect=200).doc == {"status": "ignored"}
        r = post_cio(s, cio_event(), expect=503)
        assert r.doc["error"] == "unavailable", r.doc
        # nor does a Customer.io event that is not forwarded
        spam = cio_event("01JH7Z8X2M3R4S5T6V7W8X9Y3A")
        spam["metric"] = "spammed"
        assert post_cio(s, spam, expect=200).doc["status"] == "ignored"
    finally:
        own.stop()


# --------------------------------------------------------------------------- coverage

DRIVERS = sorted(name for name, fn in list(globals().items())
                 if name.startswith("test_") and callable(fn)
                 and "driver" in fn.__code__.co_varnames[:fn.__code__.co_argcount])


def test_every_operation_was_exercised(request):
    selected = {item.name.split("[")[0] for item in request.session.items
                if item.module.__name__ == __name__}
    missing_drivers = [d for d in DRIVERS if d not in selected]
    if missing_drivers:
        pytest.skip(f"not every driver test was selected: {missing_drivers}")
    not_started = [d for d in DRIVERS if d not in STARTED]
    assert not not_started, f"driver tests that did not run: {not_started}"

    exercised = {(t, m) for (t, m, _s) in SEEN if t is not None}
    documented = {(t, m) for t, m, _, _ in operations()}
    missing = sorted(documented - exercised - set(NOT_EXERCISED))
    assert not missing, f"operations never exercised: {missing}"

    seen_statuses = {(t, m, s) for (t, m, s) in SEEN}
    assert REQUIRED_STATUSES <= seen_statuses, sorted(REQUIRED_STATUSES - seen_statuses)
    assert (None, "GET", 404) in seen_statuses
    assert any(s == 405 for (_t, _m, s) in seen_statuses)

    # documented statuses no run produced (informational)
    unseen = sorted((t, m, int(code)) for t, m, op, _ in operations()
                    for code in op["responses"] if (t, m, int(code)) not in seen_statuses)
    print("documented but not observed:", unseen)
