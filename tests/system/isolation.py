"""Module-scoped replacements for conftest's shared `redis` and `svc`, for test modules
that inspect the delivery machinery's records in Redis (queued users, their events).

The session service runs in dry run on the shared Redis: its worker delivers (drops)
queued work within milliseconds, and would race any test reading it. A module imports
what it needs, and pytest uses it instead of the shared fixture of the same name:

    from isolation import redis, svc  # noqa: F401 (fixtures)
"""
import pytest

from harness import Redis, Service, free_port


@pytest.fixture(scope="module")
def redis():
    """A redis-server of the module's own."""
    r = Redis().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def svc(redis):
    """A service whose Customer.io deliveries never succeed (its "credentials" point at a
    port nothing listens on), so queued users and their events stay in Redis."""
    s = Service(redis.url, env={"CIO_SITE_ID": "held", "CIO_API_KEY": "held",
                                "CIO_TRACK_URL": f"http://127.0.0.1:{free_port()}"}).start()
    yield s
    s.stop()
