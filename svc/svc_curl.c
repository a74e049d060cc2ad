/* svc_curl: libcurl multi on libevent. See svc_curl.h.
 *
 * Rules from libcurl's documentation this file follows: the timer callback installs one
 * non-repeating timer and never calls libcurl itself; sockets are keyed by their
 * socketp (they can belong to internal handles such as DNS); results are read before
 * curl_easy_cleanup; curl_multi_cleanup runs before the event base is freed because it
 * may still call the socket callback. */
#include "svc/svc_curl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

struct transfer;

struct svc_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int running;
    struct transfer *head;       /* transfers in flight, to abort them on free */
};

/* Per socket: the libevent event watching it. */
struct sock_ctx {
    struct svc_curl *c;
    curl_socket_t fd;
    struct event *ev;
};

/* Per transfer. */
struct transfer {
    struct svc_curl *c;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct evbuffer *response;
    long retry_after;
    long long ratelimit_reset;
    svc_curl_done_fn *done;
    void *arg;
    struct timespec started;
    struct transfer *prev, *next;
    char error[CURL_ERROR_SIZE];
};

static void unlink_transfer(struct svc_curl *c, struct transfer *t) {
    if (t->prev)
        t->prev->next = t->next;
    else
        c->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void free_transfer(struct transfer *t) {
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    evbuffer_free(t->response);
    free(t->body);
    free(t);
}

void svc_curl_global_init(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void check_done(struct svc_curl *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        struct svc_http_result res;
        memset(&res, 0, sizeof(res));
        if (code == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.error = code == CURLE_OK ? NULL : (t->error[0] ? t->error : curl_easy_strerror(code));
        evbuffer_add(t->response, "", 1);
        res.body_len = evbuffer_get_length(t->response) - 1;
        res.body = (const char *)evbuffer_pullup(t->response, -1);
        res.retry_after = t->retry_after;
        res.ratelimit_reset = t->ratelimit_reset;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        res.seconds = (double)(now.tv_sec - t->started.tv_sec) +
                      (double)(now.tv_nsec - t->started.tv_nsec) / 1e9;
        curl_multi_remove_handle(c->multi, easy);
        unlink_transfer(c, t);
        c->running--;
        t->done(&res, t->arg);
        free_transfer(t);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg) {
    struct sock_ctx *s = arg;
    struct svc_curl *c = s->c;
    int flags = 0, running;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_done(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    struct svc_curl *c = arg;
    int running;
    (void)fd;
    (void)what;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg) {
    struct svc_curl *c = arg;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    /* 0 means "as soon as possible": still go through the loop, never call curl here. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socketp) {
    struct svc_curl *c = arg;
    struct sock_ctx *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            event_free(s->ev);
            free(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->c = c;
        s->fd = fd;
        s->ev = event_new(c->base, fd, 0, on_socket_event, s);
        if (s->ev == NULL) {
            free(s);
            return -1;
        }
        curl_multi_assign(c->multi, fd, s);
    }
    short events = EV_PERSIST;
    if (what != CURL_POLL_IN)
        events |= EV_WRITE;
    if (what != CURL_POLL_OUT)
        events |= EV_READ;
    event_del(s->ev);
    event_assign(s->ev, c->base, fd, events, on_socket_event, s);
    event_add(s->ev, NULL);
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *arg) {
    struct transfer *t = arg;
    /* Bodies of error answers are kept for dead letters; cap what one answer may hold. */
    if (evbuffer_get_length(t->response) < (1u << 20))
        evbuffer_add(t->response, ptr, size * n);
    return size * n;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg) {
    struct transfer *t = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(line, "Retry-After:", 12) == 0)
        t->retry_after = strtol(line + 12, NULL, 10);
    else if (len > 18 && strncasecmp(line, "X-RateLimit-Reset:", 18) == 0)
        t->ratelimit_reset = strtoll(line + 18, NULL, 10);
    return len;
}

struct svc_curl *svc_curl_new(struct event_base *base) {
    struct svc_curl *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timeout, c);
    if (c->multi == NULL || c->timer == NULL) {
        svc_curl_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    return c;
}

void svc_curl_free(struct svc_curl *c) {
    if (c == NULL)
        return;
    /* Finish every transfer with "aborted" so their owners release what they hold. */
    while (c->head != NULL) {
        struct transfer *t = c->head;
        unlink_transfer(c, t);
        curl_multi_remove_handle(c->multi, t->easy);
        c->running--;
        struct svc_http_result res;
        memset(&res, 0, sizeof(res));
        res.error = "aborted";
        res.body = "";
        res.retry_after = -1;
        t->done(&res, t->arg);
        free_transfer(t);
    }
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

int svc_curl_running(const struct svc_curl *c) {
    return c->running;
}

int svc_curl_start(struct svc_curl *c, const struct svc_http_request *rq, svc_curl_done_fn *done,
                   void *arg) {
    struct transfer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    t->c = c;
    t->done = done;
    t->arg = arg;
    t->retry_after = -1;
    t->response = evbuffer_new();
    t->easy = curl_easy_init();
    if (t->response == NULL || t->easy == NULL)
        goto err;
    clock_gettime(CLOCK_MONOTONIC, &t->started);
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, rq->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     rq->timeout_ms > 0 && rq->timeout_ms < 5000 ? rq->timeout_ms : 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "suppressd/0.1");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Credentials never follow a redirect to another host. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (rq->userpwd != NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, rq->userpwd);
    }
    for (const char *const *h = rq->headers; h != NULL && *h != NULL; h++) {
        struct curl_slist *n = curl_slist_append(t->headers, *h);
        if (n == NULL)
            goto err;
        t->headers = n;
    }
    if (rq->body != NULL) {
        t->body = malloc(rq->body_len ? rq->body_len : 1);
        if (t->body == NULL)
            goto err;
        memcpy(t->body, rq->body, rq->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    if (strcmp(rq->method, "POST") != 0 && !(strcmp(rq->method, "GET") == 0 && rq->body == NULL))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    if (strcmp(rq->method, "GET") == 0 && rq->body == NULL)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    /* Without this, curl adds "Expect: 100-continue" to big POSTs and waits for it. */
    struct curl_slist *n = curl_slist_append(t->headers, "Expect:");
    if (n == NULL)
        goto err;
    t->headers = n;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        goto err;
    c->running++;
    t->next = c->head;
    if (c->head)
        c->head->prev = t;
    c->head = t;
    return 0;
err:
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    if (t->response)
        evbuffer_free(t->response);
    free(t->body);
    free(t);
    return -1;
}
