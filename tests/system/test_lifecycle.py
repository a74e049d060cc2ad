"""Process lifecycle: configuration errors, --version, a port already in use, SIGTERM with
requests in flight, and the logs (JSON lines, never a secret)."""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import (BIN, SANITIZER_MARKERS, Redis, RedisClient, Service,
                     free_port, sign, wait_for)
from payloads import contact_tag, conversation

ASAN_ENV = {
    "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=66",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


def minimal_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "SUPPRESS_LISTEN": f"127.0.0.1:{free_port()}",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           **ASAN_ENV}
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(args, env, timeout=10):
    return subprocess.run([BIN, *args], env=env, capture_output=True, timeout=timeout)


def stderr_lines(p):
    return [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]


# --------------------------------------------------------------------------- bad configuration

def test_minimal_configuration_starts():
    """Control for the cases below: the minimal environment itself is valid."""
    env = minimal_env()
    p = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = int(env["SUPPRESS_LISTEN"].rsplit(":", 1)[1])

        def up():
            if p.poll() is not None:
                raise AssertionError(f"exited {p.returncode}: {p.stderr.read()!r}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        wait_for(up, timeout=10, what="suppressd to listen")
    finally:
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=12)[1].decode(errors="replace")
    assert p.returncode == 0, err
    assert not any(m in err for m in SANITIZER_MARKERS), err


def test_sigterm_as_the_port_opens_still_drains():
    """An orchestrator may stop a replica the moment it starts listening. The signal must
    still reach the drain (exit 0), not kill the process before its handler exists."""
    for _ in range(5):
        env = minimal_env()
        port = int(env["SUPPRESS_LISTEN"].rsplit(":", 1)[1])
        p = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            assert p.poll() is None and time.monotonic() < deadline, "suppressd did not listen"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.001)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=15)[1].decode(errors="replace")
        assert p.returncode == 0, err
        assert not any(m in err for m in SANITIZER_MARKERS), err


def _rules(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_CONFIG = {
    # case: (variable, value or callable(tmp_path) -> value)
    "listen-nonsense": ("SUPPRESS_LISTEN", "nonsense"),
    "listen-port-out-of-range": ("SUPPRESS_LISTEN", "127.0.0.1:99999"),
    "listen-port-missing": ("SUPPRESS_LISTEN", "127.0.0.1:"),
    "redis-url-http": ("REDIS_URL", "http://x"),
    "redis-url-bad-port": ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
    "cio-rate-limit-abc": ("CIO_RATE_LIMIT", "abc"),
    "cio-rate-limit-negative": ("CIO_RATE_LIMIT", "-5"),
    "threads-zero": ("SUPPRESS_THREADS", "0"),
    "threads-abc": ("SUPPRESS_THREADS", "abc"),
    "http-timeout-abc": ("SUPPRESS_HTTP_TIMEOUT", "abc"),
    "redis-timeout-abc": ("SUPPRESS_REDIS_TIMEOUT_MS", "abc"),
    "log-level-unknown": ("SUPPRESS_LOG_LEVEL", "loud"),
    "intercom-region-unknown": ("INTERCOM_REGION", "mars"),
    "cio-region-unknown": ("CIO_REGION", "mars"),
    "rules-file-missing": ("SUPPRESS_RULES_FILE",
                           lambda tmp: str(tmp / "does-not-exist.json")),
    "rules-file-bad-json": ("SUPPRESS_RULES_FILE",
                            lambda tmp: _rules(tmp, "bad.json", '{"campaigns": {')),
    "rules-file-unknown-condition": ("SUPPRESS_RULES_FILE", lambda tmp: _rules(
        tmp, "unknown.json", '{"campaigns": {"winback": ["open_ticket", "moon_phase"]}}')),
    "rules-file-not-an-object": ("SUPPRESS_RULES_FILE",
                                 lambda tmp: _rules(tmp, "array.json", '["open_ticket"]')),
    "rules-file-bad-window": ("SUPPRESS_RULES_FILE", lambda tmp: _rules(
        tmp, "window.json", '{"windows": {"churn_risk": "two weeks"}}')),
}


@pytest.mark.parametrize("case", list(BAD_CONFIG))
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(tmp_path, case):
    var, value = BAD_CONFIG[case]
    if callable(value):
        value = value(tmp_path)
    t0 = time.monotonic()
    p = run([], minimal_env(**{var: value}))
    assert time.monotonic() - t0 < 10
    lines = stderr_lines(p)
    assert p.returncode == 2, f"exit {p.returncode}, stderr: {lines}"
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines}"
    assert var in lines[0], f"the line does not name {var}: {lines[0]}"
    entry = json.loads(lines[0])          # logs are JSON lines, this one too
    assert entry.get("level") == "error", entry


def test_bad_configuration_does_not_echo_a_password(tmp_path):
    pw = "hunter2-Pw-7781"
    p = run([], minimal_env(REDIS_URL=f"redis://:{pw}@127.0.0.1:notaport/0"))
    assert p.returncode == 2, p
    assert pw not in p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")


def test_version():
    t0 = time.monotonic()
    p = run(["--version"], {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **ASAN_ENV})
    assert time.monotonic() - t0 < 5
    assert p.returncode == 0, p
    out = (p.stdout + p.stderr).decode()
    assert "suppressd" in out, out
    assert re.search(r"\d+\.\d+(\.\d+)?", out), out


# --------------------------------------------------------------------------- port in use

def _assert_port_refused(env, port):
    p = run([], env, timeout=10)
    text = p.stderr.decode(errors="replace")
    assert p.returncode != 0, text
    assert not any(m in text for m in SANITIZER_MARKERS), text
    msg = [l for l in text.splitlines() if str(port) in l and "in use" in l.lower()]
    assert msg, f"no clear 'port {port} in use' message in:\n{text}"


def test_port_in_use_exits_non_zero_with_clear_message(redis):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = minimal_env(SUPPRESS_LISTEN=f"127.0.0.1:{port}", REDIS_URL=redis.url,
                          INTERCOM_CLIENT_SECRET="s")
        try:
            _assert_port_refused(env, port)
        except subprocess.TimeoutExpired:
            pytest.fail(f"suppressd kept running although port {port} is in use")


def test_port_in_use_by_another_suppressd_exits_non_zero(make_service, redis):
    """A second instance on the first one's port must not start and silently take half of
    its connections (SO_REUSEPORT is for the process's own event loops)."""
    first = make_service()
    env = minimal_env(SUPPRESS_LISTEN=f"127.0.0.1:{first.port}", REDIS_URL=redis.url,
                      INTERCOM_CLIENT_SECRET="another-secret")
    p = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        rc = p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        # show the harm: webhooks signed for the first instance now sometimes reach the
        # second one, which has another secret
        statuses = [first.webhook(conversation(conv_id=str(630000 + i),
                                               users=[("cid-dup", "u-dup")])).status
                    for i in range(20)]
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=12)
        pytest.fail(f"a second suppressd started on port {first.port}, already used by "
                    f"another suppressd, and kept running; 20 webhooks to that port got "
                    f"{sorted(statuses)}")
    text = p.stderr.read().decode(errors="replace")
    assert rc != 0, text
    assert any(str(first.port) in l and "in use" in l.lower() for l in text.splitlines()), text


# --------------------------------------------------------------------------- SIGTERM

@pytest.fixture
def own_redis():
    r = Redis().start()
    yield r
    r.stop()


def test_sigterm_finishes_in_flight_requests_and_exits_0(make_service, own_redis):
    s = make_service(redis_url=own_redis.url, env={"SUPPRESS_REDIS_TIMEOUT_MS": "5000"})
    results = {}
    lock = threading.Lock()

    def webhook(i):
        doc = conversation(conv_id=str(610000 + i), users=[(f"cid-term-{i}", f"u-term-{i}")],
                           state="open", updated_at=1768000100)
        try:
            r = s.webhook(doc)
            out = (r.status, r.body)
        except OSError as e:
            out = (repr(e), b"")
        with lock:
            results[("webhook", i)] = out + (time.monotonic(),)

    def query(i):
        try:
            r = s.get(f"/v1/users/u-term-q{i}")
            out = (r.status, r.body)
        except OSError as e:
            out = (repr(e), b"")
        with lock:
            results[("query", i)] = out + (time.monotonic(),)

    # Redis holds every command for 2 s: the requests below wait on it, in flight.
    own_redis.cmd("CLIENT", "PAUSE", "2000", "ALL")
    threads = ([threading.Thread(target=webhook, args=(i,)) for i in range(8)] +
               [threading.Thread(target=query, args=(i,)) for i in range(4)])
    for t in threads:
        t.start()
    time.sleep(0.6)
    t_term = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)

    # it stops accepting new connections at once, while the others are still in flight
    def refused():
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=0.2) as c:
                c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return c.recv(100) == b""
        except OSError:
            return True
    wait_for(refused, timeout=0.8, what="new connections refused after SIGTERM")

    for t in threads:
        t.join(timeout=15)
    try:
        s.proc.wait(timeout=10 - (time.monotonic() - t_term))
    except subprocess.TimeoutExpired:
        pytest.fail("suppressd did not exit within 10 s of SIGTERM")
    assert s.proc.returncode == 0, s.logs()[-3000:]

    assert len(results) == 12
    early = [k for k, v in results.items() if v[2] < t_term]
    assert not early, f"not in flight at SIGTERM (answered before it): {early}"
    failed = {k: v[:2] for k, v in results.items() if v[0] != 200}
    assert not failed, f"in-flight requests not completed with 200: {failed}"

    # every webhook answered 200 is recorded
    after = make_service(redis_url=own_redis.url)
    for i in range(8):
        u = after.user(f"u-term-{i}")
        assert [t["id"] for t in u["open_tickets"]] == [str(610000 + i)], u


# --------------------------------------------------------------------------- logs

class PasswordRedis(Redis):
    """A redis-server with requirepass, so REDIS_URL carries a password."""
    password = "redis-pw-Qx81LmZ0"
    extra_args = ("--requirepass", password)

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self, timeout=5.0):
        c = RedisClient(self.port, timeout=timeout)
        c("AUTH", self.password)
        return c


SECRETS = {
    "INTERCOM_CLIENT_SECRET": "ic-secret-Vb93kQz1",
    "INTERCOM_ACCESS_TOKEN": "ic-token-Hq27xLp9",
    "CIO_SITE_ID": "cio-site-4471",
    "CIO_API_KEY": "cio-key-Wm58rTn3",
    "CIO_WEBHOOK_SIGNING_KEY": "cio-sign-Jd64vBc2",
    "SUPPRESS_API_TOKENS": "api-tok-Zr11aa,api-tok-Yp22bb",
}
BODY_MARKER = "private-message-body-Kx77"


@pytest.fixture(scope="module")
def exercised_logs():
    """One service, configured with every kind of secret (outbound URLs pointing at a dead
    port so Customer.io sends fail and are retried), driven through good and bad requests,
    a Redis outage, and a SIGTERM. Returns (log text, values that must never appear)."""
    r = PasswordRedis().start()
    dead = f"http://127.0.0.1:{free_port()}"
    env = dict(SECRETS)
    env.update({"CIO_TRACK_URL": dead, "INTERCOM_API_URL": dead,
                "SUPPRESS_LOG_LEVEL": "debug"})
    s = Service(r.url, env=env, secret=SECRETS["INTERCOM_CLIENT_SECRET"])
    auth = {"Authorization": "Bearer api-tok-Yp22bb"}
    never = [v for k, v in SECRETS.items() if k != "CIO_SITE_ID"]
    never += SECRETS["SUPPRESS_API_TOKENS"].split(",")
    never.append(r.password)
    never.append(base64.b64encode(
        f"{SECRETS['CIO_SITE_ID']}:{SECRETS['CIO_API_KEY']}".encode()).decode())
    never.append(BODY_MARKER)
    try:
        s.start()
        r.kill()                     # a Redis outage first (its URL carries the password)
        assert s.get("/readyz").status == 503
        r.start()
        wait_for(lambda: s.get("/readyz").status == 200, timeout=5, what="ready again")
        doc = conversation(conv_id="620001", users=[("cid-log", "u-log")], state="open",
                           updated_at=int(time.time()) - 100, priority=True)
        doc["data"]["item"]["source"]["body"] = f"<p>{BODY_MARKER}</p>"
        assert s.webhook(doc).status == 200
        assert s.webhook(doc).status == 200                       # duplicate
        assert s.webhook(contact_tag(contact_id="cid-log", external_id="u-log",
                                     event_at=int(time.time()) - 50)).status == 200
        bad = json.dumps(conversation(conv_id="620002", users=[("cid-log", "u-log")])).encode()
        never.append(sign(bad, SECRETS["INTERCOM_CLIENT_SECRET"])[len("sha1="):])
        r1 = s.post("/webhooks/intercom", body=bad,
                    headers={"X-Hub-Signature": sign(bad, "wrong-secret")})
        assert r1.status == 401
        assert s.webhook(b"{not json").status == 400
        assert s.post("/webhooks/customerio", body=b'{"event_id":"x"}',
                      headers={"X-CIO-Signature": "deadbeef"}).status in (401, 503)
        assert s.get("/v1/users/u-log", headers=auth).status == 200
        assert s.get("/v1/users/u-log").status == 401
        assert s.get("/v1/users/u-log",
                     headers={"Authorization": "Bearer wrong-token"}).status == 401
        assert s.check("renewal", ["u-log"], headers=auth).status == 200
        assert s.get("/nowhere").status == 404
        assert s.get("/v1/users/u-log", headers=auth).json()["has_open_ticket"] is True
        # the Customer.io sender tries (and fails: dead port) to send the recorded changes
        time.sleep(1.5)
        s.stop()                     # SIGTERM; asserts exit 0 and no sanitizer report
        return s.logs(), never
    finally:
        if s.proc is not None:
            s.stop(check=False)
        r.stop()


def test_logs_are_json_objects_one_per_line(exercised_logs):
    text, _ = exercised_logs
    lines = [l for l in text.splitlines() if l.strip()]
    assert len(lines) >= 10, text
    levels = set()
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"log line is not JSON: {line!r}")
        assert isinstance(entry, dict), line
        assert isinstance(entry.get("ts"), str) and re.match(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", entry["ts"]), line
        assert entry.get("level") in ("debug", "info", "warn", "error"), line
        assert isinstance(entry.get("msg"), str) and entry["msg"], line
        levels.add(entry["level"])
    assert "warn" in levels or "error" in levels, "the Redis outage was not logged"


def test_no_secret_or_body_in_logs(exercised_logs):
    text, never = exercised_logs
    leaked = [v for v in never if v in text]
    assert not leaked, "secret values found in the logs: " + ", ".join(
        f"{v!r} in {next(l for l in text.splitlines() if v in l)!r}" for v in leaked)
