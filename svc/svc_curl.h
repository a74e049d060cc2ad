/* svc_curl: libcurl's multi interface driven by a libevent loop.
 *
 * The canonical multi_socket glue (curl's docs/examples/multi-event.c): curl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION); libevent calls curl_multi_socket_action back. No call
 * blocks the loop and no thread is spent per request. One svc_curl per loop. */
#ifndef SVC_CURL_H
#define SVC_CURL_H

#include <stddef.h>

#include <curl/curl.h>
#include <event2/event.h>

struct svc_curl;

/* A finished transfer. `status` is the HTTP status, or 0 when no response arrived
 * (`error` then says why: timeout, refused, DNS). `body` is the response body
 * (NUL-terminated), `retry_after` the seconds of a Retry-After header (-1 if none),
 * `ratelimit_reset` an X-RateLimit-Reset unix time (0 if none). All borrowed for the
 * duration of the callback. */
struct svc_http_result {
    long status;
    const char *error;
    const char *body;
    size_t body_len;
    long retry_after;
    long long ratelimit_reset;
    double seconds;
};

typedef void svc_curl_done_fn(const struct svc_http_result *res, void *arg);

/* One request to send. Strings are copied; nothing here needs to outlive the call. */
struct svc_http_request {
    const char *method;       /* "GET", "POST", "PUT" */
    const char *url;
    const char *body;         /* NULL for none */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
    const char *userpwd;      /* "user:password" for HTTP Basic, or NULL */
    long timeout_ms;
};

/* Creates the glue for `base`. Returns a new object (free with svc_curl_free) or NULL. */
struct svc_curl *svc_curl_new(struct event_base *base);

/* Aborts every transfer (their callbacks run with status 0, error "aborted") and frees.
 * svc_curl_free(NULL) is a no-op. Call before event_base_free. */
void svc_curl_free(struct svc_curl *c);

/* Starts a request. Returns 0 (done runs exactly once, never before this returns) or -1
 * when the request could not be created (done is not called). */
int svc_curl_start(struct svc_curl *c, const struct svc_http_request *rq, svc_curl_done_fn *done,
                   void *arg);

/* Transfers in flight. */
int svc_curl_running(const struct svc_curl *c);

/* Process-wide curl_global_init; call once from main before any thread starts. */
void svc_curl_global_init(void);

#endif
