"""Test harness: a real redis-server and the real suppressd binary, on free ports.

Nothing here mocks the service or Redis. Redis runs from a temporary directory; the
service is the binary named by SUPPRESSD_BIN (default: the ASan/UBSan build), so every
system test is also a memory-safety and leak check: Service.stop() fails the test when
the process exits non-zero or its stderr holds a sanitizer report.
"""
import hashlib
import hmac
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("SUPPRESSD_BIN", str(ROOT / "bin" / "suppressd-asan"))
FIXTURES = ROOT / "tests" / "fixtures" / "intercom"
SECRET = "test-intercom-client-secret"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --------------------------------------------------------------------------- Redis

class RespError(Exception):
    pass


class RedisClient:
    """A minimal RESP2 client, enough to inspect and prepare state in tests."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError(f"unexpected reply {line!r}")

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()


class Redis:
    """A redis-server of our own, in a temporary directory, on a free port."""

    # Options a variant adds to (or overrides on) the command line, e.g. AOF or a password.
    extra_args = ()

    def __init__(self, prefix="suppressd-redis-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.dir, "redis.log"),
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, what="redis-server to answer PING")
        return self

    def ping(self):
        try:
            c = self.client(timeout=1)
        except OSError:
            return False
        try:
            return c("PING") == "PONG"
        finally:
            c.close()

    def client(self, timeout=5.0):
        return RedisClient(self.port, timeout=timeout)

    def cmd(self, *args):
        c = self.client()
        try:
            return c(*args)
        finally:
            c.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- service

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


def sign(body, secret=SECRET):
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class Service:
    """One suppressd process."""

    def __init__(self, redis_url, env=None, port=None, secret=SECRET, threads=2):
        self.port = port or free_port()
        self.logpath = tempfile.mktemp(prefix="suppressd-", suffix=".log")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SUPPRESS_LISTEN": f"127.0.0.1:{self.port}",
            "REDIS_URL": redis_url,
            "SUPPRESS_THREADS": str(threads),
            "SUPPRESS_REDIS_TIMEOUT_MS": "1500",
            # Leaks are reported at exit; detect_leaks is on by default with ASan.
            "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:exitcode=66",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        }
        if secret is not None:
            self.env["INTERCOM_CLIENT_SECRET"] = secret
        self.env.update({k: v for k, v in (env or {}).items() if v is not None})
        for k, v in (env or {}).items():
            if v is None:
                self.env.pop(k, None)
        self.secret = secret
        self.proc = None
        self.log = None

    def start(self, wait_ready=True):
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([BIN], env=self.env, stdout=self.log, stderr=self.log)
        wait_for(lambda: self.alive() and self.get("/healthz").status == 200,
                 what="suppressd /healthz")
        if wait_ready:
            wait_for(lambda: self.get("/readyz").status == 200, what="suppressd /readyz")
        return self

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"suppressd exited with {self.proc.returncode}:\n{self.logs()}")
        return True

    def logs(self):
        try:
            return pathlib.Path(self.logpath).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout=12, check=True):
        """Stops the process; with check, asserts a clean exit and no sanitizer report."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"suppressd did not exit within {timeout}s of {sig}")
        rc = self.proc.returncode
        self.log.close()
        text = self.logs()
        if check:
            for marker in SANITIZER_MARKERS:
                assert marker not in text, f"sanitizer report in suppressd output:\n{text[-6000:]}"
            if sig in (signal.SIGTERM, signal.SIGINT):
                assert rc == 0, f"suppressd exited {rc} after {sig}:\n{text[-4000:]}"
        self.proc = None
        return rc

    # -- HTTP

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def webhook(self, payload, secret=None, headers=None):
        """Signs and posts one Intercom notification (dict or raw bytes)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h = {"Content-Type": "application/json",
             "X-Hub-Signature": sign(body, secret or self.secret),
             "User-Agent": "intercom-parrot-service-client/1.0"}
        h.update(headers or {})
        return self.post("/webhooks/intercom", body=body, headers=h)

    def user(self, user_id, headers=None):
        r = self.get("/v1/users/" + urllib.parse.quote(user_id, safe=""), headers=headers)
        assert r.status == 200, r
        return r.json()

    def suppression(self, user_id, campaign, headers=None):
        r = self.get("/v1/users/" + urllib.parse.quote(user_id, safe="") +
                     "/suppression?campaign=" + urllib.parse.quote(campaign), headers=headers)
        return r

    def check(self, campaign, user_ids, headers=None):
        return self.post("/v1/suppression/check",
                         body={"campaign": campaign, "user_ids": user_ids}, headers=headers)


# --------------------------------------------------------------------------- Redis keys

PARTITIONS = 64
BUCKETS = 128


def fnv1a(identifier):
    h = 2166136261
    for b in identifier.encode():
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def partition(identifier):
    """FNV-1a 32-bit of the id, mod 64: the {p<N>} hash tag of its keys (state_keys.h)."""
    return fnv1a(identifier) % PARTITIONS


def user_key(user):
    return f"sd:{{p{partition(user)}}}:u:{user}"


def events_key(user):
    return f"sd:{{p{partition(user)}}}:e:{user}"


def queue_key(user):
    return f"sd:{{p{partition(user)}}}:q"


def bucket_key(kind, identifier):
    """Tickets and contact links live as fields of bucket hashes (state_keys.h)."""
    h = fnv1a(identifier)
    return f"sd:{{p{h % PARTITIONS}}}:{kind}:{(h // PARTITIONS) % BUCKETS}"


def ticket_record(redis, ticket):
    """The ticket index record (index.lua): (version, deleted_at, expires_at, owners)."""
    raw = redis.cmd("HGET", bucket_key("k", ticket), ticket)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    version, deleted, expires, owners = raw.split(";", 3)
    return version, int(deleted), int(expires), [o for o in owners.split("\0") if o]


def contact_link(redis, contact):
    """The user a contact id is linked to ("?" = none yet), or None (link.lua)."""
    raw = redis.cmd("HGET", bucket_key("c", contact), contact)
    if isinstance(raw, bytes):
        raw = raw.decode()
    return None if raw is None else raw.split("|", 1)[1]
