/* state_store: one asynchronous Redis connection on one libevent loop. See state_store.h.
 *
 * Life of a connection:
 *
 *   down --(resolve host with evdns)--> connecting --(on_connect OK, handshake:
 *   AUTH, SELECT, CLIENT SETNAME, SCRIPT LOAD, PING)--> ready
 *
 * Any failure on the way (refused, handshake error, disconnect, a command unanswered for
 * timeout_ms) frees the hiredis context, which fails its pending commands with NULL, and
 * schedules a reconnect with exponential backoff (50 ms doubling to 1 s). */
#include "state/state_store.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <adapters/libevent.h>
#include <async.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/sha.h>

#include "svc/svc_log.h"

extern const char state_lua_apply[];
extern const char state_lua_link[];
extern const char state_lua_index[];
extern const char state_lua_take[];
extern const char state_lua_lease[];
extern const char state_lua_ack[];
extern const char state_lua_ratelimit[];
extern const char state_lua_job_add[];
extern const char state_lua_job_lease[];
extern const char state_lua_job_ack[];
extern const char state_lua_reconcile[];

static struct {
    const char *text;
    char sha[41];
} scripts[STATE_SCRIPT_COUNT];

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static atomic_ulong errors_total;
static atomic_ulong reconnects_total;

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define WATCHDOG_MS 100

struct state_store {
    struct event_base *base;
    struct evdns_base *dns;          /* only when the host is a name */
    struct evdns_getaddrinfo_request *dns_req;
    char *host, *user, *password, *name;
    int port, db, timeout_ms;

    redisAsyncContext *ac;           /* NULL while down */
    int ready;                       /* handshake done, commands accepted */
    int handshake_failed;
    int freeing;
    size_t pending;
    long long last_activity_ms;      /* last reply, or when pending went 0 -> 1 */
    long long connect_started_ms;
    int backoff_ms;
    struct event *retry_ev;
    struct event *watch_ev;
    char status[256];
};

/* One command in flight. A script call keeps its EVALSHA as sent (the RESP bytes, in
 * the same allocation) so that a NOSCRIPT answer can be resent as EVAL: same
 * arguments after the sha, which is swapped for the script's text. */
struct pending_cmd {
    struct state_store *st;
    state_reply_fn *fn;
    void *arg;
    int internal;                    /* handshake step: fn is NULL */
    int is_eval;                     /* an EVALSHA that may be retried as EVAL */
    enum state_script script;
    int retried;
    int eval_argc;                   /* arguments of the EVALSHA, incl. its name and sha */
    size_t cmdlen;                   /* bytes of cmd[] */
    size_t tail;                     /* offset in cmd[] of the arguments after the sha */
    char cmd[];                      /* for scripts: the formatted EVALSHA */
};

static void start_connect(struct state_store *st);

static void init_scripts(void) {
    scripts[STATE_SCRIPT_APPLY].text = state_lua_apply;
    scripts[STATE_SCRIPT_LINK].text = state_lua_link;
    scripts[STATE_SCRIPT_INDEX].text = state_lua_index;
    scripts[STATE_SCRIPT_TAKE].text = state_lua_take;
    scripts[STATE_SCRIPT_LEASE].text = state_lua_lease;
    scripts[STATE_SCRIPT_ACK].text = state_lua_ack;
    scripts[STATE_SCRIPT_RATELIMIT].text = state_lua_ratelimit;
    scripts[STATE_SCRIPT_JOB_ADD].text = state_lua_job_add;
    scripts[STATE_SCRIPT_JOB_LEASE].text = state_lua_job_lease;
    scripts[STATE_SCRIPT_JOB_ACK].text = state_lua_job_ack;
    scripts[STATE_SCRIPT_RECONCILE].text = state_lua_reconcile;
    for (int i = 0; i < STATE_SCRIPT_COUNT; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)scripts[i].text, strlen(scripts[i].text), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(scripts[i].sha + 2 * j, 3, "%02x", md[j]);
    }
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_status(struct state_store *st, const char *fmt, const char *detail) {
    snprintf(st->status, sizeof(st->status), fmt, detail ? detail : "");
}

static void free_pending(struct pending_cmd *pc) {
    free(pc);
}

/* Writes the decimal digits of v at p; returns the end. */
static char *put_uint(char *p, size_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static size_t count_digits(size_t v) {
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* RESP bytes of one bulk string of `len` bytes. */
static size_t bulk_size(size_t len) {
    return 1 + count_digits(len) + 2 + len + 2;
}

static char *put_bulk(char *p, const char *s, size_t len) {
    *p++ = '$';
    p = put_uint(p, len);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *put_array_header(char *p, size_t n) {
    *p++ = '*';
    p = put_uint(p, n);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Resends pc's EVALSHA as EVAL <script text> with the same arguments. 0 when sent. */
static int resend_as_eval(redisAsyncContext *ac, struct pending_cmd *pc) {
    const char *text = scripts[pc->script].text;
    size_t textlen = strlen(text);
    size_t restlen = pc->cmdlen - pc->tail;
    size_t len = 1 + count_digits((size_t)pc->eval_argc) + 2 + bulk_size(4) + bulk_size(textlen) +
                 restlen;
    char *cmd = malloc(len);
    if (cmd == NULL)
        abort();
    char *p = put_array_header(cmd, (size_t)pc->eval_argc);
    p = put_bulk(p, "EVAL", 4);
    p = put_bulk(p, text, textlen);
    memcpy(p, pc->cmd + pc->tail, restlen);
    if ((size_t)(p + restlen - cmd) != len)
        abort();
    /* hiredis copies the command into its output buffer before returning. */
    int rc = redisAsyncFormattedCommand(ac, on_reply, pc, cmd, len);
    free(cmd);
    return rc == REDIS_OK ? 0 : -1;
}

/* Arms the reconnect timer unless it is already armed or the store is being freed. */
static void schedule_retry(struct state_store *st) {
    if (st->freeing || evtimer_pending(st->retry_ev, NULL))
        return;
    struct timeval tv = {st->backoff_ms / 1000, (st->backoff_ms % 1000) * 1000};
    evtimer_add(st->retry_ev, &tv);
    st->backoff_ms = st->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : st->backoff_ms * 2;
}

/* Drops the current connection from outside any hiredis callback. */
static void drop_connection(struct state_store *st, const char *why) {
    redisAsyncContext *ac = st->ac;
    if (ac == NULL)
        return;
    atomic_fetch_add(&errors_total, 1);
    svc_log_warn("redis_connection_dropped", "reason", json_string(why),
                 "pending", json_integer((json_int_t)st->pending), NULL);
    set_status(st, "down: %s", why);
    st->ready = 0;
    /* redisAsyncFree runs every pending callback with NULL (each decrements pending) and,
     * for an established connection, on_disconnect; clear ac first so neither path
     * touches the freed context. */
    st->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
    schedule_retry(st);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
    struct pending_cmd *pc = privdata;
    struct state_store *st = pc->st;
    redisReply *reply = r;

    st->pending--;
    st->last_activity_ms = now_ms();

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && pc->is_eval && !pc->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && ac != NULL && st->ac == ac) {
        /* The server lost our scripts (restart without persistence, failover to a
         * replica, SCRIPT FLUSH): resend the same call as EVAL, which also caches it. */
        if (resend_as_eval(ac, pc) == 0) {
            pc->retried = 1; /* a second NOSCRIPT is final */
            st->pending++;
            return;
        }
    }
    if (reply == NULL)
        atomic_fetch_add(&errors_total, 1);
    if (pc->internal) {
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            st->handshake_failed = 1;
            set_status(st, "down: %s", reply ? reply->str : "connection lost during handshake");
        }
    } else if (pc->fn != NULL) {
        pc->fn(st, reply, pc->arg);
    }
    free_pending(pc);
}

static int send_internal(struct state_store *st, int argc, const char **argv) {
    struct pending_cmd *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return -1;
    pc->st = st;
    pc->internal = 1;
    if (redisAsyncCommandArgv(st->ac, on_reply, pc, argc, argv, NULL) != REDIS_OK) {
        free(pc);
        return -1;
    }
    if (st->pending++ == 0)
        st->last_activity_ms = now_ms();
    return 0;
}

static void on_handshake_done(struct state_store *st, redisReply *reply, void *arg) {
    (void)arg;
    if (st->ac == NULL)
        return;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR || st->handshake_failed) {
        if (!st->handshake_failed)
            set_status(st, "down: %s", reply ? reply->str : "connection lost during handshake");
        svc_log_error("redis_handshake_failed", "status", json_string(st->status), NULL);
        /* Disconnecting from inside a callback is deferred by hiredis; on_disconnect then
         * schedules the retry. */
        redisAsyncDisconnect(st->ac);
        return;
    }
    st->ready = 1;
    st->backoff_ms = BACKOFF_MIN_MS;
    set_status(st, "ready", NULL);
    svc_log_info("redis_ready", "host", json_string(st->host), "port", json_integer(st->port),
                 "db", json_integer(st->db), NULL);
}

static void on_connect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)(uintptr_t)cac;
    struct state_store *st = ac->data;
    if (st == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback; on_disconnect will not run. */
        set_status(st, "down: %s", ac->errstr);
        svc_log_warn("redis_connect_failed", "error", json_string(ac->errstr), NULL);
        st->ac = NULL;
        schedule_retry(st);
        return;
    }
    st->handshake_failed = 0;
    char db[16];
    snprintf(db, sizeof(db), "%d", st->db);
    if (st->password != NULL) {
        const char *auth_user[] = {"AUTH", st->user, st->password};
        const char *auth[] = {"AUTH", st->password};
        if (st->user != NULL)
            send_internal(st, 3, auth_user);
        else
            send_internal(st, 2, auth);
    }
    if (st->db != 0) {
        const char *sel[] = {"SELECT", db};
        send_internal(st, 2, sel);
    }
    if (st->name != NULL) {
        const char *setname[] = {"CLIENT", "SETNAME", st->name};
        send_internal(st, 3, setname);
    }
    for (int i = 0; i < STATE_SCRIPT_COUNT; i++) {
        const char *load[] = {"SCRIPT", "LOAD", scripts[i].text};
        send_internal(st, 3, load);
    }
    /* The PING goes through the public path so its reply tells us the handshake is over. */
    struct pending_cmd *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        abort();
    pc->st = st;
    pc->fn = on_handshake_done;
    const char *ping[] = {"PING"};
    if (redisAsyncCommandArgv(ac, on_reply, pc, 1, ping, NULL) != REDIS_OK) {
        free(pc);
        return;
    }
    st->pending++;
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
    redisAsyncContext *ac = (redisAsyncContext *)(uintptr_t)cac;
    struct state_store *st = ac->data;
    if (st == NULL)
        return; /* dropped on purpose; drop_connection already scheduled the retry */
    st->ac = NULL;
    st->ready = 0;
    if (st->freeing)
        return;
    if (status != REDIS_OK) {
        set_status(st, "down: %s", ac->errstr[0] ? ac->errstr : "connection lost");
        svc_log_warn("redis_disconnected", "error", json_string(st->status), NULL);
        atomic_fetch_add(&errors_total, 1);
    }
    schedule_retry(st);
}

static void connect_to(struct state_store *st, const char *ip) {
    redisAsyncContext *ac = redisAsyncConnect(ip, st->port);
    if (ac == NULL) {
        set_status(st, "down: %s", "out of memory");
        schedule_retry(st);
        return;
    }
    if (ac->err) {
        set_status(st, "down: %s", ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(st);
        return;
    }
    ac->data = st;
    if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(st);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    st->ac = ac;
    st->connect_started_ms = now_ms();
    set_status(st, "connecting%s", NULL);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg) {
    struct state_store *st = arg;
    if (result == EVUTIL_EAI_CANCEL)
        return; /* the store is being freed */
    st->dns_req = NULL;
    if (result != 0 || res == NULL) {
        set_status(st, "down: cannot resolve %s", st->host);
        svc_log_warn("redis_resolve_failed", "host", json_string(st->host),
                     "error", json_string(evutil_gai_strerror(result)), NULL);
        if (res != NULL)
            evutil_freeaddrinfo(res);
        schedule_retry(st);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    const void *addr = res->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, addr, ip, sizeof(ip));
    evutil_freeaddrinfo(res);
    connect_to(st, ip);
}

static int is_numeric_host(const char *host) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void start_connect(struct state_store *st) {
    if (st->ac != NULL || st->dns_req != NULL || st->freeing)
        return;
    atomic_fetch_add(&reconnects_total, 1);
    if (st->dns == NULL) {
        connect_to(st, st->host);
        return;
    }
    /* hiredis 0.14 would call a blocking getaddrinfo on the loop; resolve here instead,
     * on every attempt, so a Redis that moved (compose, k8s) is found again. */
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    set_status(st, "connecting%s", NULL);
    st->dns_req = evdns_getaddrinfo(st->dns, st->host, NULL, &hints, on_resolved, st);
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    start_connect(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg) {
    struct state_store *st = arg;
    (void)fd;
    (void)what;
    if (st->ac == NULL)
        return;
    long long now = now_ms();
    if (st->pending > 0 && now - st->last_activity_ms > st->timeout_ms)
        drop_connection(st, "command timeout");
    else if (!st->ready && st->pending == 0 && now - st->connect_started_ms > st->timeout_ms)
        drop_connection(st, "connect timeout");
}

struct state_store *state_store_new(struct event_base *base, const struct state_store_opts *o) {
    pthread_once(&scripts_once, init_scripts);
    struct state_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->base = base;
    st->host = strdup(o->host);
    st->user = o->user ? strdup(o->user) : NULL;
    st->password = o->password ? strdup(o->password) : NULL;
    st->name = o->name ? strdup(o->name) : NULL;
    st->port = o->port;
    st->db = o->db;
    st->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
    st->backoff_ms = BACKOFF_MIN_MS;
    st->retry_ev = evtimer_new(base, on_retry, st);
    st->watch_ev = event_new(base, -1, EV_PERSIST, on_watchdog, st);
    if (st->host == NULL || st->retry_ev == NULL || st->watch_ev == NULL)
        goto err;
    if (!is_numeric_host(st->host)) {
        st->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                       EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (st->dns == NULL) {
            /* No usable resolv.conf: still resolve names like "localhost" from /etc/hosts. */
            st->dns = evdns_base_new(base, 0);
            if (st->dns == NULL)
                goto err;
            evdns_base_load_hosts(st->dns, NULL);
        }
    }
    struct timeval tv = {0, WATCHDOG_MS * 1000};
    event_add(st->watch_ev, &tv);
    set_status(st, "connecting%s", NULL);
    start_connect(st);
    return st;
err:
    state_store_free(st);
    return NULL;
}

void state_store_free(struct state_store *st) {
    if (st == NULL)
        return;
    st->freeing = 1;
    st->ready = 0;
    if (st->dns_req != NULL) {
        evdns_getaddrinfo_cancel(st->dns_req);
        st->dns_req = NULL;
    }
    if (st->ac != NULL) {
        redisAsyncContext *ac = st->ac;
        st->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks run now, with NULL */
    }
    if (st->retry_ev)
        event_free(st->retry_ev);
    if (st->watch_ev)
        event_free(st->watch_ev);
    if (st->dns)
        evdns_base_free(st->dns, 1);
    free(st->host);
    free(st->user);
    free(st->password);
    free(st->name);
    free(st);
}

int state_store_ready(const struct state_store *st) {
    return st != NULL && st->ready && st->ac != NULL;
}

const char *state_store_status(const struct state_store *st) {
    return st->status;
}

struct event_base *state_store_base(const struct state_store *st) {
    return st->base;
}

size_t state_store_pending(const struct state_store *st) {
    return st->pending;
}

int state_store_command(struct state_store *st, state_reply_fn *fn, void *arg, int argc,
                        const char **argv, const size_t *argvlen) {
    if (!state_store_ready(st) || argc <= 0)
        return -1;
    struct pending_cmd *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return -1;
    pc->st = st;
    pc->fn = fn;
    pc->arg = arg;
    /* Formatted here rather than by redisAsyncCommandArgv, whose sds formatting (a
     * printf per argument) was a visible share of a query's and a batch check's CPU. */
    size_t len = 1 + count_digits((size_t)argc) + 2;
    for (int i = 0; i < argc; i++)
        len += bulk_size(argvlen ? argvlen[i] : strlen(argv[i]));
    char stack[1024];
    char *cmd = len <= sizeof(stack) ? stack : malloc(len);
    if (cmd == NULL) {
        free(pc);
        return -1;
    }
    char *p = put_array_header(cmd, (size_t)argc);
    for (int i = 0; i < argc; i++)
        p = put_bulk(p, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    int rc = redisAsyncFormattedCommand(st->ac, on_reply, pc, cmd, len);
    if (cmd != stack)
        free(cmd);
    if (rc != REDIS_OK) {
        free(pc);
        return -1;
    }
    if (st->pending++ == 0)
        st->last_activity_ms = now_ms();
    return 0;
}

int state_store_eval(struct state_store *st, enum state_script id, state_reply_fn *fn,
                     void *arg, int nkeys, int argc, const char **argv, const size_t *argvlen) {
    if (!state_store_ready(st) || (unsigned)id >= STATE_SCRIPT_COUNT || argc < 0 || nkeys < 0)
        return -1;
    /* EVALSHA <sha> <nkeys> <argv...>, formatted once into the pending command itself:
     * hiredis copies it into its output buffer, and it stays for a NOSCRIPT retry. No
     * per-argument copies. */
    char nk[16];
    int nklen = snprintf(nk, sizeof(nk), "%d", nkeys);
    int n = argc + 3;
    size_t head = 1 + count_digits((size_t)n) + 2 + bulk_size(7) + bulk_size(40);
    size_t len = head + bulk_size((size_t)nklen);
    for (int i = 0; i < argc; i++)
        len += bulk_size(argvlen ? argvlen[i] : strlen(argv[i]));
    struct pending_cmd *pc = malloc(sizeof(*pc) + len);
    if (pc == NULL)
        return -1;
    memset(pc, 0, sizeof(*pc));
    pc->st = st;
    pc->fn = fn;
    pc->arg = arg;
    pc->is_eval = 1;
    pc->script = id;
    pc->eval_argc = n;
    pc->cmdlen = len;
    pc->tail = head;
    char *p = put_array_header(pc->cmd, (size_t)n);
    p = put_bulk(p, "EVALSHA", 7);
    p = put_bulk(p, scripts[id].sha, 40);
    p = put_bulk(p, nk, (size_t)nklen);
    for (int i = 0; i < argc; i++)
        p = put_bulk(p, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    if ((size_t)(p - pc->cmd) != len)
        abort();
    if (redisAsyncFormattedCommand(st->ac, on_reply, pc, pc->cmd, len) != REDIS_OK) {
        free_pending(pc);
        return -1;
    }
    if (st->pending++ == 0)
        st->last_activity_ms = now_ms();
    return 0;
}

unsigned long state_store_errors_total(void) {
    return atomic_load(&errors_total);
}

unsigned long state_store_reconnects_total(void) {
    return atomic_load(&reconnects_total);
}
