"""pytest wiring: one Redis and one default service per session, a clean database for
every test, and a factory for services with their own configuration."""
import pytest

from harness import Redis, Service


@pytest.fixture(scope="session")
def redis():
    r = Redis().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def svc(redis):
    s = Service(redis.url).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def clean_redis(request):
    """Every test starts from an empty database (when it uses Redis at all)."""
    if "redis" in request.fixturenames or "svc" in request.fixturenames:
        r = request.getfixturevalue("redis")
        if r.proc is not None and r.proc.poll() is None:
            r.cmd("FLUSHALL")
    yield


@pytest.fixture
def make_service(redis):
    """Starts services with extra environment; stops (and checks) them after the test."""
    started = []

    def make(env=None, redis_url=None, wait_ready=True, **kw):
        s = Service(redis_url or redis.url, env=env, **kw)
        started.append(s)
        return s.start(wait_ready=wait_ready)

    yield make
    for s in started:
        s.stop()
