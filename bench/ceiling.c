/* ceiling: the fastest answer evhttp can give on this machine, for bench/run.sh.
 *
 * The same shape as suppressd's HTTP side (svc/svc_server.c): SUPPRESS_THREADS event
 * loops, each with its own evhttp and its own SO_REUSEPORT listening socket on
 * SUPPRESS_LISTEN, the same evhttp limits and flags, and the same answer headers. Every
 * request gets a constant JSON body the size of a suppression verdict, with no Redis,
 * no routing and no JSON encoding: what suppressd's query path reaches is shown as a
 * ratio to what this reaches.
 *
 *   SUPPRESS_LISTEN=127.0.0.1:8099 SUPPRESS_THREADS=2 build/bench/ceiling
 *
 * Runs until SIGTERM or SIGINT. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static const char BODY[] =
    "{\"user_id\":\"user-12345\",\"campaign\":\"renewal\",\"suppressed\":false,\"reasons\":[]}\n";

struct loop {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
};

static void on_request(struct evhttp_request *req, void *arg) {
    (void)arg;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(buf, BODY, sizeof(BODY) - 1);
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

static int listen_on(const char *host, int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1024) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void *run_loop(void *arg) {
    struct loop *l = arg;
    event_base_dispatch(l->base);
    return NULL;
}

int main(void) {
    const char *listen = getenv("SUPPRESS_LISTEN");
    const char *threads = getenv("SUPPRESS_THREADS");
    char host[64] = "127.0.0.1";
    int port = 8099;
    if (listen != NULL) {
        const char *colon = strrchr(listen, ':');
        if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
            fprintf(stderr, "ceiling: SUPPRESS_LISTEN must be IPv4-host:port\n");
            return 2;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = atoi(colon + 1);
    }
    long n = threads ? strtol(threads, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1 || n > 64) {
        fprintf(stderr, "ceiling: SUPPRESS_THREADS must be 1 to 64\n");
        return 2;
    }
    /* Block the stop signals in every thread; the main thread waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct loop *loops = calloc((size_t)n, sizeof(*loops));
    if (loops == NULL)
        return 1;
    for (long i = 0; i < n; i++) {
        int fd = listen_on(host, port);
        if (fd < 0) {
            fprintf(stderr, "ceiling: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
            return 1;
        }
        loops[i].base = event_base_new();
        loops[i].http = loops[i].base ? evhttp_new(loops[i].base) : NULL;
        if (loops[i].http == NULL)
            return 1;
        /* The limits and flags svc_server.c sets. */
        evhttp_set_max_body_size(loops[i].http, 1 << 20);
        evhttp_set_max_headers_size(loops[i].http, 16 * 1024);
        evhttp_set_timeout(loops[i].http, 10);
        evhttp_set_flags(loops[i].http, EVHTTP_SERVER_LINGERING_CLOSE);
        evhttp_set_allowed_methods(loops[i].http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                                      EVHTTP_REQ_HEAD);
        evhttp_set_gencb(loops[i].http, on_request, NULL);
        if (evhttp_accept_socket_with_handle(loops[i].http, fd) == NULL)
            return 1;
        if (pthread_create(&loops[i].thread, NULL, run_loop, &loops[i]) != 0)
            return 1;
    }
    fprintf(stderr, "ceiling: listening on %s:%d with %ld threads\n", host, port, n);
    int sig = 0;
    sigwait(&stop, &sig);
    /* Nothing to drain: the loops hold no state worth keeping. */
    _exit(0);
}
