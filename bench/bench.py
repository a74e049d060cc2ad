#!/usr/bin/python3
"""suppressd benchmarks: `make bench` runs this through bench/run.sh.

Everything runs on this machine, against processes this script starts and stops itself:
a redis-server on a free port under a temporary directory (AOF, appendfsync everysec, as
deploy/compose.yaml runs it), the release bin/suppressd, the Customer.io simulator
(tests/system/cio_sim.py, in this process), bench/ceiling (a bare evhttp server) and wrk.

Order (one shared Redis; each step starts from the state the previous ones left):

  seed      USERS users, one conversation.user.created each (pre-signed webhooks through
            wrk, every one sent once): every user has exactly one open ticket. Customer.io
            refuses the credentials meanwhile (401), so delivery pauses and every user
            stays dirty.
  drain     the simulator accepts the credentials: the USERS dirty users drain at
            CIO_RATE_LIMIT=100 requests/s; users/s, and the most requests that reached
            the simulator's sockets in any 1-s window (kernel receive time stamps; see
            record_arrivals). Redis memory per user with one open ticket is taken after
            the drain (outbox empty) and before it (outbox full).
  webhooks  a mix of signed notifications over the same users (opens, replies,
            priorities, snoozes, closes, ratings, contact tags), each sent once.
  ceiling   bench/ceiling with the same thread count, the query load; alternating with
  query     GET /v1/users/{id}/suppression over the USERS users, BENCH_REPEAT times
            each, the best of each counts.
  check     POST /v1/suppression/check, 1000 ids per request.
  latency   the query at 1, 4, 16, 64 and 256 connections -> bench/latency.png.
  threads   query and ceiling again with SUPPRESS_THREADS=1.
  redis     redis-benchmark: the three scripts one webhook runs (link, index, apply
            EVALSHA with realistic arguments) and the HMGET a check runs per user.
  perf      (BENCH_PERF=1 only) perf record of suppressd and redis-server under the
            webhook, query and check loads (bench/out/perf-*.txt).

Writes bench/out/results.json, bench/latency.png and the generated part of
bench/RESULTS.md (between the BEGIN/END GENERATED markers; the rest is kept).

Environment knobs: BENCH_USERS (100000), BENCH_DURATION (10 s per throughput run),
BENCH_CONNS (64), BENCH_WRK_THREADS (2), BENCH_THREADS (suppressd/ceiling threads:
nproc), BENCH_SYNC_TIMEOUT (100 s), BENCH_REPEAT (2: ceiling and query runs, best
counts), BENCH_PERF (0), BENCH_AOF (1), BENCH_RESULTS (the markdown file to write;
default bench/RESULTS.md).
"""
import csv
import datetime
import io
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
sys.path.insert(0, str(ROOT / "tests" / "system"))
import harness  # noqa: E402  (tests/system/harness.py: RedisClient, free_port, wait_for)
import cio_sim  # noqa: E402
from cio_sim import CioSim  # noqa: E402
from sim_http import max_in_window  # noqa: E402

BIN = os.environ.get("SUPPRESSD_BIN", str(ROOT / "bin" / "suppressd"))
CEILING = os.environ.get("BENCH_CEILING_BIN", str(ROOT / "build" / "bench" / "ceiling"))
USERS = int(os.environ.get("BENCH_USERS", "100000"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONNS = int(os.environ.get("BENCH_CONNS", "64"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 2)))
SYNC_TIMEOUT = float(os.environ.get("BENCH_SYNC_TIMEOUT", "100"))
PERF = os.environ.get("BENCH_PERF", "0") == "1"
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))
AOF = os.environ.get("BENCH_AOF", "1") == "1"
RESULTS_MD = pathlib.Path(os.environ.get("BENCH_RESULTS", str(BENCH / "RESULTS.md")))
SECRET = "bench-secret"
TOKEN = "bench-token"
CIO_SITE, CIO_KEY = "bench-site", "bench-key"
CIO_RATE_LIMIT = 100
CIO_BATCH = 100
LATENCY_CONNS = (1, 4, 16, 64, 256)
CLK_TCK = os.sysconf("SC_CLK_TCK")

GOALS = {
    "query_ratio": 0.7, "query_p99_ms": 5.0, "check_users_s": 150000,
    "webhooks_s": 20000, "webhooks_p99_ms": 20.0, "drain_users_s": 5000,
    "bytes_per_user": 300,
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- processes

def proc_cpu_s(pid):
    """utime + stime of a process (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy():
    """(busy, stolen, total) jiffies of all CPUs from /proc/stat. Stolen time is what the
    hypervisor gave other guests: a noise indicator on a shared host."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    idle, steal = v[3] + v[4], v[7]
    total = sum(v[:8])
    return total - idle - steal, steal, total


def proc_status(pid, key):
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Redis(harness.Redis):
    """The tests' redis-server (harness.Redis), with the persistence the bench measures."""
    extra_args = ("--maxmemory-policy", "noeviction",
                  *(("--appendonly", "yes", "--appendfsync", "everysec") if AOF else ()))

    def __init__(self):
        super().__init__(prefix="suppressd-bench-redis-")

    def start(self):
        super().start()
        self.c = self.client(timeout=60)
        return self

    def __call__(self, *args):
        return self.c(*args)

    def info(self, section=None):
        text = self.c("INFO", section) if section else self.c("INFO")
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def used_memory(self):
        return int(self.info("memory")["used_memory"])

    def queue_depth(self):
        return int(self.c("EVAL", "local s = 0 for i = 0, 63 do "
                          "s = s + redis.call('ZCARD', 'sd:{p' .. i .. '}:q') end return s", 0))

    def stop(self):
        if getattr(self, "c", None) is not None:
            self.c.close()
        super().stop()


class Server:
    """bin/suppressd or bench/ceiling."""

    def __init__(self, binary, env, port=None, name="suppressd"):
        self.binary = binary
        self.port = port or harness.free_port()
        self.name = name
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "SUPPRESS_LISTEN": f"127.0.0.1:{self.port}"}
        self.env.update(env)
        self.logpath = OUT / f"{name}.log"
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path="/readyz"):
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.binary], env=self.env, stdout=self.log,
                                     stderr=self.log)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see "
                                   f"{self.logpath}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        harness.wait_for(ready, timeout=20, what=f"{self.name} {ready_path}")
        return self

    def cpu(self):
        return proc_cpu_s(self.proc.pid)

    def rss(self):
        return proc_status(self.proc.pid, "VmRSS")

    def hwm(self):
        return proc_status(self.proc.pid, "VmHWM")

    def get(self, path, timeout=10):
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc, self.proc = self.proc.returncode, None
        return rc


def suppressd_env(redis, sim, threads):
    return {
        "REDIS_URL": redis.url,
        "SUPPRESS_THREADS": str(threads),
        "INTERCOM_CLIENT_SECRET": SECRET,
        "SUPPRESS_API_TOKENS": TOKEN,
        "CIO_SITE_ID": CIO_SITE,
        "CIO_API_KEY": CIO_KEY,
        "CIO_TRACK_URL": sim.url,
        "CIO_RATE_LIMIT": str(CIO_RATE_LIMIT),
        "SUPPRESS_SYNC_BATCH": str(CIO_BATCH),
        # While the simulator refuses the credentials, delivery pauses; it notices they
        # work again within this.
        "SUPPRESS_SYNC_PROBE_MS": "500",
        "SUPPRESS_LOG_LEVEL": "info",
    }


# --------------------------------------------------------------------------- arrivals

SO_TIMESTAMPNS = 35        # Linux; SCM_TIMESTAMPNS has the same value
ARRIVALS = []              # (kernel receive time, request line) of each simulator request


def record_arrivals():
    """Makes the simulator note when each request reached its socket, by the kernel's
    receive timestamp (SO_TIMESTAMPNS on a MSG_PEEK of the request's first bytes). The
    simulator's own time stamps are taken once its Python thread gets to the request,
    after it has read the body: with the GIL busy parsing other batches that can be tens
    of ms late, and a burst then looks denser than it was on the wire. The rate limit is
    about arrivals, so the check below uses these."""
    handler = cio_sim._Handler
    orig_setup, orig_one = handler.setup, handler.handle_one_request

    def setup(self):
        try:
            self.request.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        orig_setup(self)

    def handle_one_request(self):
        try:
            data, anc, _, _ = self.connection.recvmsg(64, socket.CMSG_SPACE(16),
                                                      socket.MSG_PEEK)
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    ARRIVALS.append((sec + nsec / 1e9, line))
        except OSError:
            pass
        return orig_one(self)

    handler.setup = setup
    handler.handle_one_request = handle_one_request



# --------------------------------------------------------------------------- load

def metrics(server):
    """suppressd's /metrics as {name{labels}: value}."""
    out = {}
    for line in server.get("/metrics").splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def webhook_outcomes(server):
    out = {}
    for k, v in metrics(server).items():
        m = re.match(r'suppressd_webhooks_total\{(.*)\}', k)
        if m and 'source="intercom"' in m.group(1):
            oc = re.search(r'outcome="([^"]+)"', m.group(1))
            if oc:
                out[oc.group(1)] = out.get(oc.group(1), 0) + int(v)
    return out


def wrk(script, url, conns, duration, env=None, threads=None, watch=(), timeout_s="10s",
        until=None):
    """Runs wrk with bench/wrk/<script>; returns its BENCH_JSON figures plus the CPU
    (cores) each process in `watch` ((name, pid) pairs) used meanwhile. until=(progress,
    target): wrk is interrupted (SIGINT: it still reports) once progress() reaches target,
    and the run's time is the script's first request to last answer (ONCE scripts)."""
    threads = max(1, min(threads or WRK_THREADS, conns))
    e = dict(os.environ)
    e.update({"BENCH_TOKEN": TOKEN, "USERS": str(USERS), "WRK_THREADS": str(threads)})
    e.update(env or {})
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
           "--timeout", timeout_s, "-s", str(BENCH / "wrk" / script), url]
    p = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT)
    procs = list(watch) + [("wrk", p.pid)]

    def snap():
        """CPU seconds of each process, machine jiffies and the time, now."""
        cpu = {}
        for name, pid in procs:
            try:
                cpu[name] = proc_cpu_s(pid)
            except OSError:
                cpu[name] = None
        return cpu, machine_busy(), time.monotonic()

    # CPU is measured from when the load starts (wrk's scripts may first spend seconds
    # loading a file) to when it ends: the first sign of progress and the target for
    # `until` runs, else the first ~0.3 s to the end of the duration.
    time.sleep(0.3)
    start = snap()
    end = None
    if until is not None:
        progress, target = until
        started = False
        while p.poll() is None:
            time.sleep(0.2)
            try:
                done = progress()
            except OSError:
                continue
            if not started and done > 0:
                start, started = snap(), True
            elif started:
                end = snap()     # the latest, in case -d ends the run first
            if done >= target:
                end = snap()
                p.send_signal(signal.SIGINT)
                break
    else:
        time.sleep(max(0.0, duration - 0.6))
        end = snap()
    stdout, stderr = p.communicate()
    if end is None:
        end = start
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}):\n{stdout}\n{stderr}")
    res = json.loads(line[len("BENCH_JSON "):])
    res["seconds"] = res["duration_us"] / 1e6
    if until is not None and res["count"] >= until[1] and res["active_us"] > 0:
        res["seconds"] = res["active_us"] / 1e6
    span = max(1e-6, end[2] - start[2])
    res["cpu"] = {name: ((end[0][name] - start[0][name]) / span
                         if end[0].get(name) is not None and start[0].get(name) is not None
                         else 0.0) for name, _ in procs}
    # The whole machine: 1.0 = every CPU busy (everything shares them); "others": cores
    # busy outside the processes measured here; "steal": taken by the hypervisor.
    total = max(1, end[1][2] - start[1][2])
    res["machine_busy"] = (end[1][0] - start[1][0]) / total
    res["steal"] = (end[1][1] - start[1][1]) / total
    ncpu = os.cpu_count() or 1
    res["cpu_others"] = max(0.0, res["machine_busy"] * ncpu - sum(res["cpu"].values()))
    res["rps"] = res["requests"] / res["seconds"]
    res["socket_errors"] = (res["connect_errors"] + res["read_errors"] + res["write_errors"] +
                            res["timeouts"])
    res["conns"] = conns
    res["wrk_threads"] = threads
    return res


def ms(us):
    return us / 1000.0


# --------------------------------------------------------------------------- phases

def generate(path, n, mode, extra=()):
    t0 = time.monotonic()
    subprocess.run([sys.executable, str(BENCH / "gen_webhooks.py"), str(path), str(n),
                    "--mode", mode, "--users", str(USERS), "--secret", SECRET, *extra],
                   check=True)
    log(f"generated {n} {mode} notifications in {time.monotonic() - t0:.1f} s")


def phase_seed(R, redis, svc, tmp):
    path = tmp / "seed.txt"
    generate(path, USERS, "seed")
    R["memory"]["before_seed"] = redis.used_memory()
    R["memory"]["keys_before"] = int(redis("DBSIZE"))
    before = webhook_outcomes(svc)
    base = sum(before.values())
    res = wrk("webhooks.lua", svc.url, CONNS, 600, env={"WEBHOOKS": str(path), "ONCE": "1"},
              watch=[("suppressd", svc.proc.pid), ("redis", redis.proc.pid)],
              until=(lambda: sum(webhook_outcomes(svc).values()) - base, USERS))
    after = webhook_outcomes(svc)
    res["outcomes"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    res["webhooks_s"] = res["count"] / res["seconds"]
    R["seed"] = res
    R["memory"]["after_seed"] = redis.used_memory()
    log(f"seed: {res['count']} webhooks in {res['seconds']:.1f} s = {res['webhooks_s']:.0f}/s, "
        f"outcomes {res['outcomes']}, non-2xx {res['non_2xx']}")
    path.unlink()


def phase_drain(R, redis, svc, sim):
    depth0 = redis.queue_depth()
    log(f"drain: {depth0} users waiting; Customer.io accepts the credentials now")
    cpu0 = {"suppressd": svc.cpu(), "redis": proc_cpu_s(redis.proc.pid),
            "cio_sim": proc_cpu_s(os.getpid())}
    sim.reset()   # forget the 401s; back to the right credentials
    ARRIVALS.clear()
    t0 = time.monotonic()
    depth, samples = depth0, []
    while time.monotonic() - t0 < SYNC_TIMEOUT:
        time.sleep(0.25)
        depth = redis.queue_depth()
        samples.append((time.monotonic() - t0, depth))
        if depth == 0:
            break
    t_end = time.monotonic()
    cpu1 = {"suppressd": svc.cpu(), "redis": proc_cpu_s(redis.proc.pid),
            "cio_sim": proc_cpu_s(os.getpid())}
    with sim._lock:
        reqs = [(r["time"], r["method"], r["path"], r["status"]) for r in sim.requests]
        identified = len({i for i, _, _ in sim.identifies})
        nevents = len(sim.events)
    batches = [r for r in reqs if r[2].startswith("/api/v2/batch")]
    first = reqs[0][0] if reqs else t0
    statuses = {}
    for r in reqs:
        statuses[str(r[3])] = statuses.get(str(r[3]), 0) + 1

    arrivals = sorted(ARRIVALS)
    api = [t for t, line in arrivals if "/_control" not in line]
    posts = [t for t, line in arrivals if line.startswith("POST /api/v2/batch")]
    per_s = {}
    for t in posts:
        per_s[int(t - posts[0])] = per_s.get(int(t - posts[0]), 0) + 1
    drained = depth0 - depth
    if depth == 0 and len(posts) > 1:
        # First batch to last batch at the simulator, plus one average gap for the last.
        span = (posts[-1] - posts[0]) * len(posts) / (len(posts) - 1)
    else:
        span = max(1e-6, t_end - t0 - (first - t0))
    R["drain"] = {
        "users_waiting": depth0, "users_drained": drained, "complete": depth == 0,
        "users_identified": identified, "events": nevents,
        "seconds": span, "users_s": drained / span,
        "wall_s": t_end - t0,
        "first_request_after_s": first - t0,
        "requests": len(reqs), "batch_requests": len(batches),
        "statuses": statuses,
        # At the simulator's sockets (kernel receive times): what Customer.io would see.
        "max_requests_any_1s": max_in_window(api, 1.0),
        "max_batches_any_1s": max_in_window(posts, 1.0),
        "arrivals_recorded": len(arrivals),
        # As the simulator's Python threads stamped them (late under load).
        "sim_stamped_max_requests_any_1s": max_in_window([r[0] for r in reqs], 1.0),
        "sim_stamped_max_batches_any_1s": max_in_window([r[0] for r in batches], 1.0),
        "batches_per_whole_second": [per_s.get(i, 0) for i in range(max(per_s) + 1)]
        if per_s else [],
        "cpu": {k: (cpu1[k] - cpu0[k]) / max(1e-6, t_end - t0) for k in cpu0},
        "depth_samples": samples,
    }
    d = R["drain"]
    log(f"drain: {drained}/{depth0} users in {span:.1f} s = {d['users_s']:.0f} users/s; "
        f"{len(batches)} batches; in any 1 s at most {d['max_requests_any_1s']} requests "
        f"arrived ({d['sim_stamped_max_requests_any_1s']} by the simulator's own stamps); "
        f"statuses {statuses}")


def phase_memory(R, redis, when):
    """Memory after the drain: per user with one open ticket, and what each key costs."""
    m = R["memory"]
    m[when] = redis.used_memory()
    m["keys_" + when] = int(redis("DBSIZE"))
    if when != "after_drain":
        return
    sample = [harness.user_key(f"user-{u}") for u in range(0, USERS, max(1, USERS // 200))]
    per_key = {"user_hash": sum(int(redis("MEMORY", "USAGE", k, "SAMPLES", "0") or 0)
                                for k in sample) / len(sample)}
    # Tickets and contact links are fields of bucket hashes (state_keys.h): their cost per
    # entry is the buckets' memory over the entries they hold.
    buckets = {}
    for kind, name in (("k", "ticket_index"), ("c", "contact_link")):
        total = entries = listpacks = 0
        for p in range(harness.PARTITIONS):
            for b in range(harness.BUCKETS):
                key = f"sd:{{p{p}}}:{kind}:{b}"
                total += int(redis("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
                entries += int(redis("HLEN", key) or 0)
                listpacks += redis("OBJECT", "ENCODING", key) in ("listpack", "ziplist")
        per_key[name] = total / max(1, entries)
        buckets[name] = {"bytes": total, "entries": entries, "listpack_buckets": listpacks}
    zsets = {}
    for kind in ("w", "q", "r"):
        total = members = 0
        for p in range(64):
            key = f"sd:{{p{p}}}:{kind}"
            total += int(redis("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
            members += int(redis("ZCARD", key) or 0)
        zsets[kind] = {"bytes": total, "members": members}
    fields = redis("HGETALL", harness.user_key("user-1"))
    m["per_key"] = per_key
    m["buckets"] = buckets
    m["zsets"] = zsets
    m["user_hash_example"] = dict(zip(fields[::2], fields[1::2])) if fields else {}
    m["encoding_user_hash"] = redis("OBJECT", "ENCODING", harness.user_key("user-1"))
    m["per_user_steady"] = (m["after_drain"] - m["before_seed"]) / USERS
    m["per_user_with_outbox"] = (m["after_seed"] - m["before_seed"]) / USERS
    m["keys_per_user"] = (m["keys_after_drain"] - m["keys_before"]) / USERS
    log(f"memory: {m['per_user_steady']:.0f} B/user after the drain, "
        f"{m['per_user_with_outbox']:.0f} B/user with the outbox full; keys {per_key}")


def phase_webhooks(R, redis, svc, tmp, n):
    path = tmp / "mixed.txt"
    generate(path, n, "mixed", ("--seeded", str(USERS)))
    mem0 = redis.used_memory()
    before = webhook_outcomes(svc)
    base = sum(before.values())
    res = wrk("webhooks.lua", svc.url, CONNS, DURATION,
              env={"WEBHOOKS": str(path), "ONCE": "1"},
              watch=[("suppressd", svc.proc.pid), ("redis", redis.proc.pid)],
              until=(lambda: sum(webhook_outcomes(svc).values()) - base, n))
    after = webhook_outcomes(svc)
    res["outcomes"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    res["webhooks_s"] = res["count"] / res["seconds"]
    res["file_lines"] = n
    res["exhausted"] = res["count"] >= n
    time.sleep(0.5)   # the last answers' scripts have run; the outbox stays (sync paused)
    applied = max(1, res["outcomes"].get("applied", 0))
    res["memory_per_webhook"] = (redis.used_memory() - mem0) / applied
    R["webhooks"] = res
    log(f"webhooks: {res['count']} in {res['seconds']:.1f} s = {res['webhooks_s']:.0f}/s "
        f"p50 {ms(res['p50_us']):.2f} p99 {ms(res['p99_us']):.2f} ms, outcomes "
        f"{res['outcomes']}, non-2xx {res['non_2xx']}, socket errors {res['socket_errors']}")
    path.unlink()


def run_ceiling(threads, conns=None, duration=None):
    srv = Server(CEILING, {"SUPPRESS_THREADS": str(threads)}, name=f"ceiling-t{threads}")
    srv.start(ready_path="/")
    try:
        return wrk("suppression.lua", srv.url, conns or CONNS, duration or DURATION,
                   watch=[("ceiling", srv.proc.pid)])
    finally:
        srv.stop()


def phase_queries(R, redis, svc, threads):
    """The ceiling and the query, alternately, REPEAT times each; the best run of each
    counts (on a shared machine a neighbour's burst only ever makes a run slower)."""
    key = f"t{threads}"
    cs, qs = [], []
    for _ in range(REPEAT):
        cs.append(run_ceiling(threads))
        log(f"ceiling t={threads}: {cs[-1]['rps']:.0f}/s p99 {ms(cs[-1]['p99_us']):.2f} ms")
        qs.append(wrk("suppression.lua", svc.url, CONNS, DURATION,
                      watch=[("suppressd", svc.proc.pid), ("redis", redis.proc.pid)]))
        log(f"query t={threads}: {qs[-1]['rps']:.0f}/s p99 {ms(qs[-1]['p99_us']):.2f} ms")
    c = max(cs, key=lambda r: r["rps"])
    q = max(qs, key=lambda r: r["rps"])
    c["all_rps"] = [r["rps"] for r in cs]
    q["all_rps"] = [r["rps"] for r in qs]
    R["ceiling"][key] = c
    q["ratio"] = q["rps"] / c["rps"]
    R["query"][key] = q
    log(f"query t={threads}: {q['rps']:.0f}/s ({q['ratio']:.2f}x ceiling) p50 "
        f"{ms(q['p50_us']):.2f} p99 {ms(q['p99_us']):.2f} ms, non-2xx {q['non_2xx']}")


def phase_check(R, redis, svc):
    res = wrk("check.lua", svc.url, 16, DURATION, env={"IDS": "1000"},
              watch=[("suppressd", svc.proc.pid), ("redis", redis.proc.pid)])
    res["users_s"] = res["count"] / res["seconds"]
    R["check"] = res
    log(f"check: {res['rps']:.0f} requests/s = {res['users_s']:.0f} user checks/s, p99 "
        f"{ms(res['p99_us']):.2f} ms, non-2xx {res['non_2xx']}")


def phase_latency(R, redis, svc):
    rows = []
    for c in LATENCY_CONNS:
        res = wrk("suppression.lua", svc.url, c, max(3, DURATION // 2),
                  watch=[("suppressd", svc.proc.pid), ("redis", redis.proc.pid)])
        rows.append(res)
        log(f"latency c={c}: {res['rps']:.0f}/s p50 {ms(res['p50_us']):.2f} "
            f"p99 {ms(res['p99_us']):.2f} ms")
    R["latency"] = rows
    plot_latency(rows)


def plot_latency(rows):
    dat = OUT / "latency.dat"
    with open(dat, "w") as f:
        f.write("# connections requests_per_s p50_ms p90_ms p99_ms max_ms\n")
        for r in rows:
            f.write(f"{r['conns']} {r['rps']:.0f} {ms(r['p50_us']):.3f} {ms(r['p90_us']):.3f} "
                    f"{ms(r['p99_us']):.3f} {ms(r['max_us']):.3f}\n")
    if shutil.which("gnuplot") is None:
        log("gnuplot not installed: bench/latency.png not drawn (data in bench/out/latency.dat)")
        return
    script = f"""
set terminal pngcairo size 900,520 noenhanced font ",10"
set output "{BENCH / 'latency.png'}"
set title "GET /v1/users/{{id}}/suppression: latency vs load ({THREADS} threads, {os.cpu_count()} CPUs shared with wrk and Redis)"
set logscale x 2
set xlabel "concurrent connections (wrk -c)"
set ylabel "latency (ms)"
set logscale y
set y2label "requests/s"
set y2tics
set ytics nomirror
set key top left
set grid
plot "{dat}" using 1:3 with linespoints lw 2 title "p50", \\
     "{dat}" using 1:4 with linespoints lw 2 title "p90", \\
     "{dat}" using 1:5 with linespoints lw 2 title "p99", \\
     "{dat}" using 1:2 axes x1y2 with linespoints lw 2 dt 2 title "requests/s (right)"
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        # Older gnuplot-nox without cairo: the plain png terminal.
        script = script.replace('pngcairo size 900,520 noenhanced font ",10"',
                                "png size 900,520 noenhanced")
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            log(f"gnuplot failed: {e.stderr} {r.stderr}")


def redis_bench(port, args, n, clients=50, pipeline=16):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(n), "-P", str(pipeline), "-r", str(USERS), "--csv", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    if r.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"redis-benchmark failed: {r.stdout} {r.stderr}")
    # The first column is the command line, unescaped (the JSON argument's quotes break
    # CSV), so the figures are read from the right.
    head = next(csv.reader(io.StringIO(lines[0])))
    vals = lines[1].rsplit('","', len(head) - 1)[1:]
    d = dict(zip(head[1:], (v.strip('"') for v in vals)))
    return {"rps": float(d["rps"]), "p50_ms": float(d.get("p50_latency_ms", 0)),
            "p99_ms": float(d.get("p99_latency_ms", 0)), "n": n, "clients": clients,
            "pipeline": pipeline}


def phase_redis(R, redis):
    """What Redis alone sustains for the work one webhook and one checked user cost."""
    sha = {}
    for name in ("apply", "link", "index"):
        sha[name] = redis("SCRIPT", "LOAD", (ROOT / "state" / "lua" / f"{name}.lua").read_text())
    now = str(int(time.time()))
    change = json.dumps({"at": int(now), "t": {"id": "900000001", "k": "c", "s": "o", "p": 0,
                                                "o": int(now) - 60, "u": int(now)},
                         "ids": ["01JBENCH0000000000000000A1", "01JBENCH0000000000000000A2"]},
                        separators=(",", ":"))
    version = f"o|{now}|{now}|c|{int(now) - 60}|0"
    p = "{p7}"
    scripts = {
        # link.lua "link": the contact -> user map, phase one of a webhook.
        # One bucket hash for all (redis-benchmark draws each __rand_int__ separately, so
        # contact and user rarely match a stored link: every call writes, the worst case).
        "link": ["EVALSHA", sha["link"], "1", f"sd:{p}:c:17", "link", "65f0__rand_int__",
                 "bench-user-__rand_int__", now],
        # index.lua "add": the ticket -> owners index, phase two.
        "index": ["EVALSHA", sha["index"], "1", f"sd:{p}:k:17", "add", now, "2592000",
                  "9__rand_int__", "0", version, "bench-user-__rand_int__"],
        # apply.lua: the user's state change, outbox record, dedupe; phase two.
        "apply": ["EVALSHA", sha["apply"], "3", f"sd:{p}:u:bench-user-__rand_int__",
                  f"sd:{p}:q", f"sd:{p}:e:bench-user-__rand_int__", now,
                  "d__rand_int__", "1", change, "bench-user-__rand_int__", "2764800"],
        # One checked user: HMGET of the six rule facts (the check pipelines 1000).
        "hmget": ["HMGET", "sd:{p3}:u:user-__rand_int__", "n", "pa", "ca", "cu", "cs", "ct"],
    }
    out = {}
    for name, args in scripts.items():
        runs = []
        for _ in range(REPEAT):   # best of REPEAT, like the query runs
            if name == "hmget":
                runs.append(redis_bench(redis.port, args, 2000000, clients=8, pipeline=200))
            else:
                runs.append(redis_bench(redis.port, args,
                                        150000 if name == "apply" else 300000))
        out[name] = max(runs, key=lambda r: r["rps"])
        out[name]["all_rps"] = [r["rps"] for r in runs]
        log(f"redis-benchmark {name}: {out[name]['rps']:.0f}/s (runs {out[name]['all_rps']})")
    # Redis time per webhook is the sum of its three scripts' times.
    out["webhook_ceiling"] = 1.0 / sum(1.0 / out[k]["rps"] for k in ("link", "index", "apply"))
    out["check_ceiling_users_s"] = out["hmget"]["rps"]
    R["redis"] = out
    log(f"redis ceilings: {out['webhook_ceiling']:.0f} webhooks/s, "
        f"{out['check_ceiling_users_s']:.0f} user checks/s")


def phase_perf(R, redis, svc, tmp):
    """perf record (DWARF call graphs) of suppressd and redis-server under the webhook,
    query and batch-check loads; the reports land in bench/out/perf-<path>-<proc>.txt."""
    if shutil.which("perf") is None:
        log("perf not installed: skipping the profile")
        return
    R["perf"] = {}
    path = tmp / "perf-mixed.txt"
    generate(path, 100000, "mixed", ("--seeded", str(USERS), "--seed", "7"))
    secs = max(4, DURATION // 2)
    loads = (("webhooks", "webhooks.lua", CONNS, {"WEBHOOKS": str(path), "ONCE": "1"}),
             ("query", "suppression.lua", CONNS, {}),
             ("check", "check.lua", 16, {"IDS": "1000"}))
    for name, script, conns, env in loads:
        recs = []
        for proc, pid in (("suppressd", svc.proc.pid), ("redis", redis.proc.pid)):
            data = OUT / f"perf-{name}-{proc}.data"
            recs.append((proc, data, subprocess.Popen(
                ["perf", "record", "-F", "499", "--call-graph", "dwarf,32768", "-p", str(pid),
                 "-o", str(data), "--", "sleep", str(secs)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(0.3)
        base = sum(webhook_outcomes(svc).values())
        wrk(script, svc.url, conns, secs + 1, env=env,
            until=(lambda: sum(webhook_outcomes(svc).values()) - base, 100000)
            if name == "webhooks" else None)
        for proc, data, rec in recs:
            rec.wait()
            out = OUT / f"perf-{name}-{proc}.txt"
            with open(out, "w") as f:
                for args in (["--no-children", "--sort", "dso", "-g", "none"],
                             ["--children", "--sort", "sym", "-g", "none",
                              "--percent-limit", "2"]):
                    r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", *args],
                                       capture_output=True, text=True)
                    f.write(r.stdout)
            data.unlink()
            R["perf"][f"{name}-{proc}"] = str(out.relative_to(ROOT))
        log(f"perf {name}: bench/out/perf-{name}-*.txt")
    path.unlink()


# --------------------------------------------------------------------------- report

def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"

    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory": mem,
        "kernel": platform.release(), "load_before": open("/proc/loadavg").read().split()[:3],
        "suppressd": ver([BIN, "--version"]), "redis": ver(["redis-server", "--version"]),
        "wrk": ver(["wrk", "--version"]), "libevent": ver(["pkg-config", "--modversion",
                                                          "libevent"]),
        "hiredis": ver(["pkg-config", "--modversion", "hiredis"]),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(v, d=0):
    return f"{v:,.{d}f}"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def render(R):
    m, g = R["machine"], GOALS
    q2, c2 = R["query"].get(f"t{THREADS}"), R["ceiling"].get(f"t{THREADS}")
    ck, wh, dr, mem, rb = R["check"], R["webhooks"], R["drain"], R["memory"], R["redis"]
    L = []
    w = L.append
    w(f"Measured {m['date']} by `make bench` (bench/run.sh → bench/bench.py), "
      f"{fmt(R['elapsed_s'])} s in all.")
    w("")
    w("**Machine.** " + f"{m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; "
      f"load average before the run {' '.join(m['load_before'])}. {m['suppressd']} "
      f"(release, -O2), {m['redis']}, {m['wrk']}, libevent {m['libevent']}, "
      f"hiredis {m['hiredis']}, Python {m['python']}.")
    w("")
    w(f"**Set-up.** Everything shares the {m['nproc']} CPUs: wrk ({WRK_THREADS} threads), "
      f"suppressd ({THREADS} event loops), redis-server "
      f"({'AOF appendfsync everysec' if AOF else 'no persistence'}), and the Customer.io "
      f"simulator (Python). {fmt(USERS)} users; throughput runs last {DURATION} s at "
      f"{CONNS} connections (the batch check at 16). `/v1/*` with a Bearer token, webhooks "
      f"with real-shaped signed Intercom payloads (2.5 to 3.6 kB). Latencies are wrk's, "
      f"client side, so they include wrk's own queueing on the shared CPUs.")
    w("")
    w("| scenario | goal | measured | vs ceiling | p50 / p99 / max (ms) | suppressd CPU | "
      "Redis CPU | errors | goal |")
    w("|---|---|---|---|---|---|---|---|---|")

    def lat(r):
        return f"{ms(r['p50_us']):.2f} / {ms(r['p99_us']):.2f} / {ms(r['max_us']):.1f}"

    def cpu(r, k):
        return f"{r['cpu'].get(k, 0):.2f} cores"

    def errs(r):
        return f"{r['non_2xx']} non-2xx, {r['socket_errors']} socket"
    if q2 and c2:
        ok = q2["ratio"] >= g["query_ratio"] and ms(q2["p99_us"]) <= g["query_p99_ms"]
        w(f"| (1) GET /v1/users/{{id}}/suppression | ≥ {g['query_ratio']}× ceiling, "
          f"p99 ≤ {g['query_p99_ms']:.0f} ms | {fmt(q2['rps'])} req/s | "
          f"{q2['ratio']:.2f}× of {fmt(c2['rps'])} (bare evhttp) | {lat(q2)} | "
          f"{cpu(q2, 'suppressd')} | {cpu(q2, 'redis')} | {errs(q2)} | {verdict(ok)} |")
    ok = ck["users_s"] >= g["check_users_s"]
    w(f"| (2) POST /v1/suppression/check, 1000 ids | ≥ {fmt(g['check_users_s'])} user "
      f"checks/s | {fmt(ck['users_s'])} checks/s ({fmt(ck['rps'])} req/s) | "
      f"{ck['users_s'] / rb['check_ceiling_users_s']:.2f}× of {fmt(rb['check_ceiling_users_s'])}"
      f" (Redis HMGET, pipelined) | {lat(ck)} | {cpu(ck, 'suppressd')} | {cpu(ck, 'redis')} | "
      f"{errs(ck)} | {verdict(ok)} |")
    ok = wh["webhooks_s"] >= g["webhooks_s"] and ms(wh["p99_us"]) <= g["webhooks_p99_ms"]
    w(f"| (3) POST /webhooks/intercom, mixed, signed | ≥ {fmt(g['webhooks_s'])}/s, p99 ≤ "
      f"{g['webhooks_p99_ms']:.0f} ms | {fmt(wh['webhooks_s'])} webhooks/s | "
      f"{wh['webhooks_s'] / rb['webhook_ceiling']:.2f}× of {fmt(rb['webhook_ceiling'])} "
      f"(Redis: link+index+apply scripts) | {lat(wh)} | {cpu(wh, 'suppressd')} | "
      f"{cpu(wh, 'redis')} | {errs(wh)} | {verdict(ok)} |")
    ceil_sync = CIO_RATE_LIMIT * CIO_BATCH
    fast = dr["users_s"] >= g["drain_users_s"] and dr["complete"]
    if fast and dr["max_requests_any_1s"] <= CIO_RATE_LIMIT:
        v = verdict(True)
    elif fast and dr["max_batches_any_1s"] <= CIO_RATE_LIMIT:
        v = (f"**not met** by {dr['max_requests_any_1s'] - CIO_RATE_LIMIT}: the batches keep "
             "the limit, the credential probe is not counted in it")
    else:
        v = verdict(False)
    w(f"| (4) Customer.io sync drain, {fmt(dr['users_waiting'])} dirty users | ≥ "
      f"{fmt(g['drain_users_s'])} users/s, never over {CIO_RATE_LIMIT} requests in any 1 s | "
      f"{fmt(dr['users_s'])} users/s; at most {dr['max_batches_any_1s']} batch requests, "
      f"{dr['max_requests_any_1s']} requests of any kind, arrived in any 1 s"
      f"{'' if dr['complete'] else ' (NOT finished in time)'} | "
      f"{dr['users_s'] / ceil_sync:.2f}× of {fmt(ceil_sync)} (limit × batch of {CIO_BATCH}) | — | "
      f"{dr['cpu']['suppressd']:.2f} cores | {dr['cpu']['redis']:.2f} cores | "
      f"statuses {dr['statuses']} | {v} |")
    ok = mem["per_user_steady"] <= g["bytes_per_user"]
    w(f"| Redis memory per user with one open ticket | ≤ {g['bytes_per_user']} B | "
      f"{fmt(mem['per_user_steady'])} B (outbox drained); {fmt(mem['per_user_with_outbox'])} B "
      f"while its sync is pending | — | — | — | — | — | {verdict(ok)} |")
    w("")
    w(f"suppressd RSS: {R['rss']['max_mib']:.1f} MiB at most (VmHWM), "
      f"{R['rss']['end_mib']:.1f} MiB at the end. CPU columns are the process's utime+stime "
      "(/proc/<pid>/stat) over the time the load ran; 2.00 would be both CPUs.")
    w("")
    w("### CPU per unit of work")
    w("")
    w("Cores used during each run (utime+stime over the time the load ran; the machine has "
      f"{m['nproc']}), and CPU time per unit: what sizing multiplies by the expected rate. "
      "\"Machine busy\" is all CPUs from /proc/stat: near 100 % means the run was bound by "
      "the shared CPUs, load generator included. \"Others\" is CPU busy outside the "
      "processes measured (kernel threads, other jobs); \"stolen\" is time the hypervisor "
      "gave other guests: both are noise.")
    w("")
    w("| run | unit | units/s | suppressd | Redis | wrk | others | stolen | machine busy | "
      "suppressd µs/unit | Redis µs/unit |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    units = [("seed webhooks (opens)", "webhook", R["seed"], R["seed"]["webhooks_s"]),
             ("mixed webhooks", "webhook", wh, wh["webhooks_s"])]
    if q2:
        units.append(("query", "request", q2, q2["rps"]))
    units.append(("batch check", "user checked", ck, ck["users_s"]))
    for name, unit, r, rate in units:
        c = r["cpu"]
        w(f"| {name} | {unit} | {fmt(rate)} | {c.get('suppressd', 0):.2f} | "
          f"{c.get('redis', 0):.2f} | {c.get('wrk', 0):.2f} | {r.get('cpu_others', 0):.2f} | "
          f"{100 * r.get('steal', 0):.0f} % | {100 * r.get('machine_busy', 0):.0f} % | "
          f"{1e6 * c.get('suppressd', 0) / max(rate, 1e-9):.1f} | "
          f"{1e6 * c.get('redis', 0) / max(rate, 1e-9):.1f} |")
    w("")
    w("### Thread scaling (query scenario)")
    w("")
    w(f"Best of {REPEAT} runs each, the ceiling and the query alternating (every run in "
      "brackets).")
    w("")
    w("| SUPPRESS_THREADS | suppressd req/s | p50 / p99 / max (ms) | bare evhttp req/s | ratio | "
      "suppressd CPU |")
    w("|---|---|---|---|---|---|")

    def runs(r):
        return "(" + ", ".join(fmt(x) for x in r.get("all_rps", [r["rps"]])) + ")"
    for t in sorted(R["query"]):
        q, c = R["query"][t], R["ceiling"].get(t)
        w(f"| {t[1:]} | {fmt(q['rps'])} {runs(q)} | {lat(q)} | "
          f"{fmt(c['rps']) + ' ' + runs(c) if c else '—'} | {q['ratio']:.2f} | "
          f"{cpu(q, 'suppressd')} |")
    w("")
    w("### Latency vs load (query scenario)")
    w("")
    w("wrk here has no `-R` (constant rate), so the load is varied by connections, each "
      "sending its next request as soon as the previous answer arrives. Plot: "
      "`bench/latency.png`.")
    w("")
    w("| connections | req/s | p50 | p90 | p99 | max (ms) |")
    w("|---|---|---|---|---|---|")
    for r in R["latency"]:
        w(f"| {r['conns']} | {fmt(r['rps'])} | {ms(r['p50_us']):.2f} | {ms(r['p90_us']):.2f} | "
          f"{ms(r['p99_us']):.2f} | {ms(r['max_us']):.1f} |")
    w("")
    w("![latency vs load](latency.png)")
    w("")
    w("### Details")
    w("")
    sd = R["seed"]
    w(f"* **Seed** ({fmt(USERS)} × conversation.user.created, each sent once): "
      f"{fmt(sd['webhooks_s'])} webhooks/s, p50 / p99 {ms(sd['p50_us']):.2f} / "
      f"{ms(sd['p99_us']):.2f} ms, outcomes {sd['outcomes']}, {sd['non_2xx']} non-2xx.")
    w(f"* **Mixed webhooks**: {fmt(wh['count'])} notifications "
      f"({'the whole file' if wh['exhausted'] else 'of ' + fmt(wh['file_lines'])}) in "
      f"{wh['seconds']:.1f} s; outcomes {wh['outcomes']}. Topics: opens, replies, priority, "
      f"snoozes, closes, ratings, contact tags (bench/gen_webhooks.py --mode mixed). Redis "
      f"grew by {fmt(wh.get('memory_per_webhook', 0))} B per recorded notification (its "
      f"7-day dedupe record, new tickets and their index entries, 30-day tombstones of "
      f"closed ones, and the Customer.io work still queued, since delivery is paused "
      f"during this run).")
    w(f"* **Redis alone** (redis-benchmark against the same server, {{p7}} keys, "
      f"__rand_int__ over {fmt(USERS)}): link.lua {fmt(rb['link']['rps'])}/s, index.lua "
      f"{fmt(rb['index']['rps'])}/s, apply.lua {fmt(rb['apply']['rps'])}/s (50 clients, "
      f"pipeline 16) → {fmt(rb['webhook_ceiling'])} webhooks/s if Redis did nothing else; "
      f"HMGET of the six facts {fmt(rb['hmget']['rps'])}/s (pipeline 200); best of "
      f"{REPEAT} runs each.")
    w(f"* **Sync drain**: the first request (the credential probe) {dr['first_request_after_s']:.1f} s "
      f"after the simulator accepted the credentials (probe interval 0.5 s); "
      f"{dr['batch_requests']} batch requests of up to {CIO_BATCH} users; "
      f"{fmt(dr['users_identified'])} users identified, {fmt(dr['events'])} events; "
      f"{fmt(dr['users_drained'])} users from first to last batch in {dr['seconds']:.1f} s "
      f"({dr['wall_s']:.1f} s from the credentials to an empty queue). Batch requests per "
      f"whole second {dr['batches_per_whole_second'][:30]}"
      f"{' …' if len(dr['batches_per_whole_second']) > 30 else ''}. Arrivals are the kernel's "
      f"receive times at the simulator's sockets (SO_TIMESTAMPNS): at most "
      f"{dr['max_batches_any_1s']} batch requests and {dr['max_requests_any_1s']} requests of "
      f"any kind in any 1-s window. The simulator's own time stamps, taken when its Python "
      f"thread gets to a request, say {dr['sim_stamped_max_batches_any_1s']}: under load "
      f"they bunch up and overstate bursts. suppressd enforces {CIO_RATE_LIMIT} per 1.1 s "
      f"(state/state_outbox.c RATE_WINDOW_MS), so its own ceiling is "
      f"{fmt(CIO_RATE_LIMIT * CIO_BATCH / 1.1)} users/s. Simulator (Python, in the bench "
      f"process) CPU {dr['cpu']['cio_sim']:.2f} cores.")
    pk = mem["per_key"]
    w(f"* **Memory** (used_memory deltas over {fmt(USERS)} users; MEMORY USAGE of a sample): "
      f"user hash {pk['user_hash']:.0f} B ({mem['encoding_user_hash']}); per entry of the "
      f"bucket hashes, ticket index {pk['ticket_index']:.0f} B and contact link "
      f"{pk['contact_link']:.0f} B ("
      + ", ".join(f"{k}: {fmt(v['entries'])} entries in {fmt(v['listpack_buckets'])} "
                  f"listpack buckets of {fmt(harness.PARTITIONS * harness.BUCKETS)}"
                  for k, v in mem["buckets"].items()) + "); zsets "
      + ", ".join(f"`{k}` {v['bytes'] / max(1, v['members']):.0f} B/member × "
                  f"{fmt(v['members'])}" for k, v in mem["zsets"].items()) +
      f"; {mem['keys_per_user']:.2f} keys per user. One user's hash after the drain: "
      f"`{json.dumps(mem['user_hash_example'])}`.")
    w("")
    w("Raw figures: `bench/out/results.json` (not committed).")
    return "\n".join(L)


def write_results(R):
    begin, end = "<!-- BEGIN GENERATED (make bench) -->", "<!-- END GENERATED -->"
    gen = f"{begin}\n{render(R)}\n{end}"
    if RESULTS_MD.exists() and begin in RESULTS_MD.read_text():
        text = RESULTS_MD.read_text()
        a, b = text.index(begin), text.index(end) + len(end)
        text = text[:a] + gen + text[b:]
    else:
        text = ("# suppressd benchmark results\n\n`make bench` regenerates the part between "
                "the markers; the rest of this file is kept.\n\n## Figures\n\n" + gen + "\n")
    RESULTS_MD.write_text(text)


# --------------------------------------------------------------------------- main

def main():
    t_start = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.glob("*.log"):
        f.unlink()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="suppressd-bench-"))
    R = {"machine": machine(), "memory": {}, "ceiling": {}, "query": {},
         "config": {"users": USERS, "duration": DURATION, "conns": CONNS,
                    "wrk_threads": WRK_THREADS, "threads": THREADS, "aof": AOF}}
    log(f"{R['machine']['nproc']} CPUs, {R['machine']['cpu']}; {USERS} users, "
        f"{DURATION} s runs, {CONNS} connections")
    redis = Redis().start()
    record_arrivals()
    sim = CioSim(site_id=CIO_SITE, api_key=CIO_KEY).start()
    sim.set_credentials(CIO_SITE, "not-the-key")   # delivery pauses until the drain step
    svc = None
    hwm = 0
    try:
        svc = Server(BIN, suppressd_env(redis, sim, THREADS)).start()
        phase_seed(R, redis, svc, tmp)
        phase_drain(R, redis, svc, sim)
        phase_memory(R, redis, "after_drain")
        sim.set_credentials(CIO_SITE, "not-the-key")   # pause again: no sync load below
        n = int(min(400000, max(60000, R["seed"]["webhooks_s"] * DURATION * 1.5)))
        phase_webhooks(R, redis, svc, tmp, n)
        phase_queries(R, redis, svc, THREADS)
        phase_check(R, redis, svc)
        phase_latency(R, redis, svc)
        if PERF:
            phase_perf(R, redis, svc, tmp)
        hwm = max(hwm, svc.hwm())
        R["rss"] = {"end_mib": svc.rss() / 2**20}
        svc.stop()
        if THREADS != 1:
            svc = Server(BIN, suppressd_env(redis, sim, 1), name="suppressd-t1").start()
            phase_queries(R, redis, svc, 1)
            hwm = max(hwm, svc.hwm())
            svc.stop()
        svc = None
        phase_redis(R, redis)
        R["rss"]["max_mib"] = hwm / 2**20
    finally:
        if svc is not None:
            svc.stop()
        sim.stop()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    R["elapsed_s"] = time.monotonic() - t_start
    (OUT / "results.json").write_text(json.dumps(R, indent=1))
    write_results(R)
    log(f"done in {R['elapsed_s']:.0f} s: {RESULTS_MD}, bench/latency.png")


if __name__ == "__main__":
    main()
