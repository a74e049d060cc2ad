"""HTTP plumbing shared by the API simulators of the system tests (stdlib only).

cio_sim.py (Customer.io Track API) and intercom_sim.py (Intercom REST API) answer very
different APIs, but each runs the same kind of server around its API: a threaded HTTP/1.1
server that keeps track of its connections (so that stop() also ends kept-alive ones),
reads plain and chunked bodies, sends /_control/... requests to the simulator's control
API and everything else to its API, can drop a connection with a FIN or an RST, and can
answer late. This module holds that common part, so a fix to it reaches both simulators.

What each API puts on the wire (default headers, error bodies, authentication, which
faults exist and how they are queued, rate limits) stays in the simulator. A simulator
plugs in by subclassing:

    Handler    server_version, log_name, _bad_body_answer() and, when the answer carries
               more than its own headers, _header_items(ans)
    Simulator  handler_class, and _control(method, path, body) and
               _serve_api(handler, body), which usually ends in _respond(); _respond()
               calls _answer(handler, body, rec)
    Answer     default body or extra members (e.g. a content type)
"""
import http
import http.client
import http.server
import json
import signal
import socket
import struct
import sys
import threading
import time


# --------------------------------------------------------------------------- helpers

def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _reject_constant(name):
    raise ValueError(f"invalid JSON constant {name}")


def parse_json(raw):
    """Strict JSON: UTF-8 only, no NaN/Infinity. Raises ValueError."""
    if not raw.strip():
        raise ValueError("empty body")
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def status_phrase(status):
    """The reason phrase of an HTTP status; "error" for codes http.HTTPStatus lacks
    (tests inject statuses such as 299 or 599)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def body_bytes(body, status, fault_body, encode):
    """A fault body as a test gives it -> bytes: None gets the simulator's default body
    for the status (fault_body(status)), bytes and str are sent as they are, anything
    else is JSON in the simulator's own style (encode)."""
    if body is None:
        return fault_body(status)
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return encode(body)


def max_in_window(times, window):
    """The most of `times` (sorted) within any `window` seconds."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def control_request(path, body):
    """-> (name, args) of a /_control/<name> request. Raises ValueError when the body is
    not a JSON object; an empty body means no arguments."""
    name = path.split("?", 1)[0][len("/_control/"):].strip("/")
    args = parse_json(body) if body.strip() else {}
    if not isinstance(args, dict):
        raise ValueError("control body must be a JSON object")
    return name, args


class Reply:
    """A simulator's answer as its tests read it (see http_call)."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Reply {self.status} {self.body[:300]!r}>"


def http_call(port, method, path, body=None, headers=None, timeout=5):
    """One request to a simulator on 127.0.0.1, a body that is not bytes sent as JSON.
    Header names in the Reply are lower-case."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


class Answer:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        # A copy, so that headers added to one answer (intercom_sim's rate-limit
        # headers) cannot leak into others built from the same dict.
        self.headers = dict(headers or {})


# --------------------------------------------------------------------------- server

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5; the tests and benchmarks open
    # connections in bursts.
    request_queue_size = 256

    def __init__(self, addr, sim, handler):
        self.sim = sim
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sim"      # set by each simulator; also names the server thread
    sys_version = ""
    log_name = "sim"            # prefix of the verbose log lines

    def setup(self):
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.conns_lock:
                self.server.conns.discard(self.connection)

    def log_message(self, fmt, *args):
        if self.server.sim.verbose:
            sys.stderr.write("%s: %s - %s\n" % (self.log_name, self.address_string(),
                                                fmt % args))

    def send_response(self, code, message=None):
        # No Server header: the stdlib's would name Python's http.server, and the
        # simulators do not model the real services' one (Customer.io answers through
        # Google's front end).
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(n) if n else b""

    def _bad_body_answer(self):
        """The answer to a body that cannot be read (bad chunking or Content-Length), in
        the simulator's error style."""
        raise NotImplementedError

    def _handle(self):
        try:
            body = self._read_body()
        except (ValueError, ConnectionError):
            # The rest of the stream cannot be trusted to start a request.
            self.close_connection = True
            self._send(self._bad_body_answer())
            return
        sim = self.server.sim
        if self.path.startswith("/_control/") or self.path == "/_control":
            self._send(sim._control(self.command, self.path, body))
            return
        sim._serve_api(self, body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle

    def _header_items(self, ans):
        """(name, value) pairs sent before Content-Length."""
        return ans.headers.items()

    def _send(self, ans):
        self.send_response(ans.status)
        for k, v in self._header_items(ans):
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(ans.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(ans.body)
        self.wfile.flush()

    def _drop(self, reset):
        """Closes the socket without an answer: FIN (reset=False) or RST (reset=True)."""
        self.close_connection = True
        try:
            if reset:
                # Linger on with a zero timeout: close() then sends RST, not FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------- simulator

class Simulator:
    """Lifecycle and request bookkeeping of a simulator. Subclasses set handler_class and
    define _control, _serve_api and _answer (see the module docstring)."""

    handler_class = Handler

    def __init__(self, host, port, verbose):
        self.host = host
        self.port = port or 0
        self.verbose = verbose
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.requests = []              # cleared in place by reset()

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._stopping.clear()
        self._server = Server((self.host, self.port), self, self.handler_class)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.handler_class.server_version}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()            # wakes delayed answers
        self._server.shutdown()
        self._server.server_close()
        with self._server.conns_lock:   # close kept-alive client connections too
            for c in list(self._server.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def request_times(self, monotonic=False):
        """Times of every request that reached the API (incl. 401, faults and drops);
        wall clock by default, time.monotonic() values with monotonic=True."""
        key = "time" if monotonic else "wall"
        with self._lock:
            return [r[key] for r in self.requests]

    @staticmethod
    def _new_record(h, body):
        """The entry of self.requests for an API request, stamped now; the caller appends
        it (under the lock) and fills in status, fault and delay."""
        now_m, now_w = time.monotonic(), time.time()
        try:
            parsed = parse_json(body)
        except ValueError:
            parsed = None
        return {"time": now_m, "wall": now_w, "method": h.command, "path": h.path,
                "headers": {k.lower(): v for k, v in h.headers.items()}, "body": body,
                "json": parsed, "status": None, "fault": None, "delay": 0.0}

    def _requests_json(self, extra=()):
        """self.requests for GET /_control/requests: the body as text, no parsed JSON;
        `extra` names further record members to include."""
        with self._lock:
            return [{"time": r["time"], "wall": r["wall"], "method": r["method"],
                     "path": r["path"], "headers": r["headers"],
                     "body": r["body"].decode("utf-8", "replace"),
                     "status": r["status"], "fault": r["fault"],
                     **{k: r[k] for k in extra}}
                    for r in self.requests]

    def _respond(self, h, body, rec, delay=0.0, process_first=True):
        """Answers an API request, `delay` seconds late. With process_first the request is
        applied first and only the answer waits (a client that times out has still
        changed the state); otherwise the wait comes first. stop() cuts the wait short."""
        if delay and not process_first:
            self._stopping.wait(delay)
        ans = self._answer(h, body, rec)
        rec["status"] = ans.status
        if delay and process_first:
            self._stopping.wait(delay)
        try:
            h._send(ans)
        except OSError:
            h.close_connection = True


# --------------------------------------------------------------------------- script

def serve_until_signalled(sim, name):
    """For running a started simulator as its own process: prints its URL, serves until
    SIGTERM or SIGINT, then stops it. Returns the exit status."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"{name} listening on {sim.url}", flush=True)
    # A timed wait, so the main thread gets to run the signal handlers.
    while not done.wait(0.5):
        pass
    sim.stop()
    return 0
