/* svc_server: the event loops. See svc_server.h.
 *
 * Shutdown order matters with these library versions (see DESIGN): stop accepting
 * (evhttp_del_accept_socket), wait for requests parked on Redis, free the Redis
 * connection (its pending callbacks answer 503), give answers a moment to flush, then
 * evhttp_free and event_base_free. evhttp_free with Redis replies still pending leaves
 * hiredis holding freed requests. */
#include "svc/svc_server.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "api/api_http.h"
#include "state/state_store.h"
#include "svc/svc_backfill.h"
#include "svc/svc_curl.h"
#include "svc/svc_log.h"
#include "svc/svc_intercom.h"
#include "svc/svc_sync.h"

#define FLUSH_MS 100

struct svc_worker {
    int index;
    struct svc_server *srv;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct api_env env;
    struct svc_curl *curl;       /* outbound HTTP on this loop */
    struct svc_sync *sync;       /* Customer.io delivery on this loop */
    struct svc_intercom *intercom; /* Intercom jobs on this loop */
    struct event *stop_ev;       /* activated from the main thread on SIGTERM */
    struct event *drain_ev;      /* polls env.inflight while draining */
    long long drain_deadline_ms;
    long long flush_at_ms;
    pthread_t thread;
    int started;
};

struct svc_server {
    const struct svc_config *cfg;
    int nworkers;
    struct svc_worker *workers;
    int drain_ms;
};

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens one listening socket. With reuseport, every loop binds the same port and the kernel
 * spreads connections between them. Without it the socket is only bound, never listening:
 * a probe that the port is free. Returns the fd or -1 with err. */
static evutil_socket_t listen_socket(const struct svc_config *cfg, int reuseport, char *err,
                                     size_t errlen) {
    struct addrinfo hints, *res = NULL;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", cfg->listen_port);
    int rc = getaddrinfo(cfg->listen_host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve SUPPRESS_LISTEN host \"%s\": %s", cfg->listen_host,
                 gai_strerror(rc));
        return -1;
    }
    evutil_socket_t fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                res->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || (reuseport && listen(fd, 1024) < 0)) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static struct state_store_opts store_opts(const struct svc_config *cfg, const char *name) {
    struct state_store_opts so = {
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .user = cfg->redis_user,
        .password = cfg->redis_password,
        .db = cfg->redis_db,
        .timeout_ms = cfg->redis_timeout_ms,
        .name = name,
    };
    return so;
}

static void teardown(struct svc_worker *w) {
    /* Transfers still running finish as "aborted" (their users stay queued: the lease runs
     * out and another replica takes them). Then Redis: requests still parked on it get
     * 503 from their callbacks, and delivery rounds waiting on it are dropped. */
    svc_curl_free(w->curl);
    w->curl = NULL;
    w->env.curl = NULL;
    state_store_free(w->env.store);
    w->env.store = NULL;
    svc_sync_free(w->sync);
    w->sync = NULL;
    svc_intercom_free(w->intercom);
    w->intercom = NULL;
    w->flush_at_ms = mono_ms() + FLUSH_MS;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_worker *w = arg;
    (void)fd;
    (void)what;
    long long now = mono_ms();
    if (w->env.store != NULL) {
        if ((w->env.inflight > 0 || !svc_sync_idle(w->sync) ||
             !svc_intercom_idle(w->intercom)) && now < w->drain_deadline_ms)
            return;
        if (w->env.inflight > 0)
            svc_log_warn("drain_timeout", "loop", json_integer(w->index),
                         "inflight", json_integer(w->env.inflight), NULL);
        teardown(w);
        return;
    }
    if (now >= w->flush_at_ms) {
        event_del(w->drain_ev);
        event_base_loopexit(w->base, NULL);
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg) {
    struct svc_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->bound != NULL) {
        evhttp_del_accept_socket(w->http, w->bound);
        w->bound = NULL;
    }
    svc_sync_stop(w->sync);
    svc_intercom_stop(w->intercom);
    /* A backfill stops here, not at teardown, so its lock release and progress note
     * reach Redis during the drain. Its cursor stays: the next run resumes. */
    svc_backfill_free(w->env.backfill);
    w->drain_deadline_ms = mono_ms() + w->srv->drain_ms;
    struct timeval tick = {0, 20 * 1000};
    event_add(w->drain_ev, &tick);
}

static void *worker_main(void *arg) {
    struct svc_worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static int worker_init(struct svc_server *srv, struct svc_worker *w, int index, char *err,
                       size_t errlen) {
    const struct svc_config *cfg = srv->cfg;
    w->index = index;
    w->srv = srv;
    w->base = event_base_new();
    if (w->base == NULL)
        goto oom;
    evutil_socket_t fd = listen_socket(cfg, 1, err, errlen);
    if (fd < 0)
        return -1;
    w->http = evhttp_new(w->base);
    if (w->http == NULL) {
        close(fd);
        goto oom;
    }
    evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->max_body);
    evhttp_set_max_headers_size(w->http, 16 * 1024);
    evhttp_set_timeout(w->http, cfg->http_timeout);
    /* Read the rest of an oversized body before answering 413, so the client sees the
     * answer instead of a reset connection. */
    evhttp_set_flags(w->http, EVHTTP_SERVER_LINGERING_CLOSE);
    /* Allow every method here; api_handle answers 405 itself (evhttp would say 501). */
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    w->bound = evhttp_accept_socket_with_handle(w->http, fd);
    if (w->bound == NULL) {
        close(fd);
        snprintf(err, errlen, "cannot accept on %s:%d", cfg->listen_host, cfg->listen_port);
        return -1;
    }
    char name[32];
    snprintf(name, sizeof(name), "suppressd-%d-%d", (int)getpid(), index);
    struct state_store_opts so = store_opts(cfg, name);
    w->env.cfg = cfg;
    w->env.base = w->base;
    w->env.store = state_store_new(w->base, &so);
    if (w->env.store == NULL)
        goto oom;
    evhttp_set_gencb(w->http, api_handle, &w->env);
    w->curl = svc_curl_new(w->base);
    if (w->curl == NULL)
        goto oom;
    w->env.curl = w->curl;
    w->sync = svc_sync_new(w->base, w->env.store, w->curl, cfg, index);
    if (w->sync == NULL)
        goto oom;
    w->intercom = svc_intercom_new(w->base, w->env.store, w->curl, cfg, index);
    if (w->intercom == NULL)
        goto oom;
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->drain_ev = event_new(w->base, -1, EV_PERSIST, on_drain_tick, w);
    if (w->stop_ev == NULL || w->drain_ev == NULL)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void stop_signals(int how) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(how, &set, NULL);
}

struct svc_server *svc_server_new(const struct svc_config *cfg, char *err, size_t errlen) {
    /* Loops are per thread, but stop events are activated from the main thread. */
    if (evthread_use_pthreads() < 0) {
        snprintf(err, errlen, "libevent has no pthreads support");
        return NULL;
    }
    struct svc_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* The port opens below, before svc_server_run installs the SIGTERM handler: a signal
     * in between (an orchestrator stopping a replica as it starts) would kill the process
     * without its drain. Hold SIGTERM and SIGINT until the handler is in place. */
    stop_signals(SIG_BLOCK);
    /* SO_REUSEPORT lets any process of the same user share the port, so a second suppressd
     * started by mistake would silently take part of this one's traffic. Binding once
     * without it first fails with "Address already in use" when anyone listens there (the probe
     * never listens, so no client can connect to it). */
    evutil_socket_t probe = listen_socket(cfg, 0, err, errlen);
    if (probe < 0) {
        free(srv);
        return NULL;
    }
    close(probe);
    srv->cfg = cfg;
    srv->nworkers = cfg->threads;
    srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        free(srv);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < srv->nworkers; i++) {
        if (worker_init(srv, &srv->workers[i], i, err, errlen) < 0) {
            svc_server_free(srv);
            return NULL;
        }
    }
    return srv;
}

struct signal_ctx {
    struct svc_server *srv;
    struct event_base *base;
    int count;
};

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    struct signal_ctx *sc = arg;
    (void)what;
    if (++sc->count > 1) {
        svc_log_warn("shutdown_forced", "signal", json_integer((json_int_t)sig), NULL);
        _exit(1);
    }
    svc_log_info("shutdown_started", "signal", json_string(sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                 NULL);
    for (int i = 0; i < sc->srv->nworkers; i++)
        event_active(sc->srv->workers[i].stop_ev, EV_TIMEOUT, 0);
    event_base_loopexit(sc->base, NULL);
}

int svc_server_run(struct svc_server *srv, int drain_ms) {
    srv->drain_ms = drain_ms;
    struct event_base *base = event_base_new();
    struct signal_ctx sc = {srv, base, 0};
    struct event *term = evsignal_new(base, SIGTERM, on_signal, &sc);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, &sc);
    if (base == NULL || term == NULL || intr == NULL || event_add(term, NULL) < 0 ||
        event_add(intr, NULL) < 0) {
        svc_log_error("startup_failed", "reason", json_string("cannot install signal handlers"),
                      NULL);
        return 1;
    }
    stop_signals(SIG_UNBLOCK); /* one that came meanwhile is delivered now, to on_signal */
    for (int i = 0; i < srv->nworkers; i++) {
        struct svc_worker *w = &srv->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            svc_log_error("startup_failed", "reason", json_string("cannot start a loop thread"),
                          NULL);
            return 1;
        }
        w->started = 1;
    }
    svc_log_info("listening", "host", json_string(srv->cfg->listen_host),
                 "port", json_integer(srv->cfg->listen_port),
                 "threads", json_integer(srv->nworkers), NULL);
    event_base_dispatch(base);
    /* Signals keep arriving on this loop while the workers drain (a second one forces). */
    for (int i = 0; i < srv->nworkers; i++) {
        while (srv->workers[i].started && pthread_tryjoin_np(srv->workers[i].thread, NULL) != 0) {
            event_base_loop(base, EVLOOP_NONBLOCK);
            usleep(5000);
        }
        srv->workers[i].started = 0;
    }
    event_free(term);
    event_free(intr);
    event_base_free(base);
    svc_log_info("shutdown_complete", NULL);
    return 0;
}

void svc_server_free(struct svc_server *srv) {
    if (srv == NULL)
        return;
    for (int i = 0; i < srv->nworkers; i++) {
        struct svc_worker *w = &srv->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        svc_curl_free(w->curl);
        state_store_free(w->env.store);
        svc_sync_free(w->sync);
        svc_intercom_free(w->intercom);
        if (w->http)
            evhttp_free(w->http);
        if (w->stop_ev)
            event_free(w->stop_ev);
        if (w->drain_ev)
            event_free(w->drain_ev);
        if (w->base)
            event_base_free(w->base);
    }
    free(srv->workers);
    free(srv);
}

/*---------------------------------------------------------------------------
 * `suppressd backfill`
 *--------------------------------------------------------------------------*/

struct backfill_cli {
    struct event_base *base;
    struct svc_backfill *run;
    int rc;
    int interrupted;
};

static void on_backfill(enum svc_backfill_event ev, const char *message, void *arg) {
    struct backfill_cli *c = arg;
    if (ev == SVC_BACKFILL_STARTED || c->interrupted)
        return;
    c->rc = ev == SVC_BACKFILL_DONE ? 0 : 1;
    (void)message; /* logged by the backfill itself */
    event_base_loopexit(c->base, NULL);
}

static void on_backfill_signal(evutil_socket_t sig, short what, void *arg) {
    struct backfill_cli *c = arg;
    (void)what;
    c->interrupted = 1;
    svc_log_warn("backfill_interrupted", "signal", json_integer((json_int_t)sig), "message",
                 json_string("stopped; the next run resumes from the last recorded page"), NULL);
    svc_backfill_free(c->run);
    c->rc = 130;
    /* A moment for the lock release and the progress note to reach Redis. */
    struct timeval flush = {0, 200 * 1000};
    event_base_loopexit(c->base, &flush);
}

int svc_server_backfill(const struct svc_config *cfg, int restart) {
    struct backfill_cli c = {0};
    c.rc = 1;
    c.base = event_base_new();
    if (c.base == NULL)
        return 1;
    char name[48];
    snprintf(name, sizeof(name), "suppressd-backfill-%d", (int)getpid());
    struct state_store_opts so = store_opts(cfg, name);
    struct state_store *store = state_store_new(c.base, &so);
    struct svc_curl *curl = svc_curl_new(c.base);
    struct event *term = evsignal_new(c.base, SIGTERM, on_backfill_signal, &c);
    struct event *intr = evsignal_new(c.base, SIGINT, on_backfill_signal, &c);
    if (store != NULL && curl != NULL && term != NULL && intr != NULL) {
        event_add(term, NULL);
        event_add(intr, NULL);
        if (svc_backfill_start(c.base, store, curl, cfg, restart, on_backfill, &c, &c.run) != NULL)
            event_base_dispatch(c.base);
    }
    svc_backfill_free(c.run);
    svc_curl_free(curl);
    state_store_free(store);
    if (term)
        event_free(term);
    if (intr)
        event_free(intr);
    event_base_free(c.base);
    return c.rc;
}
