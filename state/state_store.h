/* state_store: one asynchronous Redis connection on one libevent loop.
 *
 * Wraps hiredis 0.14's async API with what it lacks: reconnection with backoff (from
 * both the connect and disconnect callbacks, since 0.14 reports a failed connect only
 * through the former), a command timeout (0.14 has none), host names resolved with
 * evdns instead of a blocking getaddrinfo on the loop, AUTH/SELECT on every connect, and
 * Lua scripts run by EVALSHA with an EVAL fallback on NOSCRIPT.
 *
 * Commands are refused (return -1, callback never called) while the connection is not
 * ready, so callers can answer 503 at once instead of queueing behind a dead server.
 * Once accepted, a command's callback runs exactly once: with the reply, or with NULL
 * when the connection failed, timed out or the store is freed. */
#ifndef STATE_STORE_H
#define STATE_STORE_H

#include <stddef.h>

#include <event2/event.h>
#include <hiredis.h>

struct state_store;

struct state_store_opts {
    const char *host;
    int port;
    const char *user;     /* NULL: AUTH <password> (or none) */
    const char *password; /* NULL: no AUTH */
    int db;
    int timeout_ms;       /* a pending command unanswered this long fails the connection */
    const char *name;     /* CLIENT SETNAME, for operators reading CLIENT LIST */
};

/* Scripts embedded from state/lua/. */
enum state_script {
    STATE_SCRIPT_APPLY = 0,   /* apply.lua: one user's change */
    STATE_SCRIPT_LINK,        /* link.lua: contact id -> user id map */
    STATE_SCRIPT_INDEX,       /* index.lua: ticket -> owners index */
    STATE_SCRIPT_TAKE,        /* take.lua: read and remove a user's state (identity moves) */
    STATE_SCRIPT_LEASE,       /* lease.lua: take due users from a sync queue */
    STATE_SCRIPT_ACK,         /* ack.lua: report one user's delivery */
    STATE_SCRIPT_RATELIMIT,   /* ratelimit.lua: shared requests-per-second budget */
    STATE_SCRIPT_JOB_ADD,     /* job_add.lua: queue one Intercom job */
    STATE_SCRIPT_JOB_LEASE,   /* job_lease.lua: take due Intercom jobs */
    STATE_SCRIPT_JOB_ACK,     /* job_ack.lua: report one Intercom job */
    STATE_SCRIPT_RECONCILE,   /* reconcile.lua: queue re-checks of long-open tickets */
    STATE_SCRIPT_COUNT
};

/* Called once per accepted command. `reply` is NULL on connection failure; it is only
 * valid during the call (hiredis frees it afterwards). */
typedef void state_reply_fn(struct state_store *st, redisReply *reply, void *arg);

/* Creates a store and starts connecting. Returns a new store owned by the caller (free
 * with state_store_free), or NULL when out of memory. Never blocks. */
struct state_store *state_store_new(struct event_base *base, const struct state_store_opts *o);

/* Fails every pending command (callbacks get NULL), closes the connection and frees the
 * store. state_store_free(NULL) is a no-op. */
void state_store_free(struct state_store *st);

/* True when commands are accepted. */
int state_store_ready(const struct state_store *st);

/* "ready", "connecting" or the last error, for /readyz. Borrowed; valid until the next
 * loop iteration. */
const char *state_store_status(const struct state_store *st);

/* Sends one command. argv/argvlen are copied by hiredis before return. Returns 0 when
 * sent (fn will be called once; fn may be NULL for a fire-and-forget write), -1 when the
 * store is not ready (fn is not called). */
int state_store_command(struct state_store *st, state_reply_fn *fn, void *arg, int argc,
                        const char **argv, const size_t *argvlen);

/* Runs embedded script `id` with `nkeys` keys: argv holds the keys then the arguments
 * (without EVALSHA, sha or numkeys). Same contract as state_store_command; a NOSCRIPT
 * answer is retried once with EVAL transparently. */
int state_store_eval(struct state_store *st, enum state_script id, state_reply_fn *fn,
                     void *arg, int nkeys, int argc, const char **argv, const size_t *argvlen);

/* The loop the store runs on. Borrowed. */
struct event_base *state_store_base(const struct state_store *st);

/* Number of commands sent and not yet answered. */
size_t state_store_pending(const struct state_store *st);

/* Process-wide counters for /metrics. */
unsigned long state_store_errors_total(void);
unsigned long state_store_reconnects_total(void);

#endif
