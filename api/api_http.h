/* api_http: what every HTTP handler shares: the per-loop environment, JSON answers in
 * the contract's shape, Bearer auth, and the request router entry point.
 *
 * One api_env exists per event loop; handlers reach Redis only through its store. A
 * handler either answers at once or keeps the request (counted in env->inflight) until
 * a Redis reply arrives; every path answers exactly once. */
#ifndef API_HTTP_H
#define API_HTTP_H

#include <stdint.h>

#include <event2/http.h>
#include <jansson.h>

#include "state/state_store.h"
#include "svc/svc_config.h"
#include "svc/svc_metrics.h"

struct svc_curl;
struct svc_backfill;

struct api_env {
    const struct svc_config *cfg;
    struct state_store *store;
    struct event_base *base;
    int inflight;                /* requests waiting on Redis (drained on SIGTERM) */
    struct svc_curl *curl;       /* this loop's outbound HTTP (admin backfill) */
    struct svc_backfill *backfill; /* a backfill started on this loop, while it runs */
};

/* One request being answered: where it goes in the metrics and when it started. */
struct api_call {
    struct evhttp_request *req;
    struct api_env *env;
    enum svc_route route;
    uint64_t start_us;
};

/* evhttp's generic callback: routes every request. arg is the loop's api_env. */
void api_handle(struct evhttp_request *req, void *arg);

/* Monotonic microseconds, for latency. */
uint64_t api_now_us(void);

/* Answers with `body` (stolen) as JSON. */
void api_reply_json(const struct api_call *call, int status, json_t *body);

/* Answers {"error": code, "message": message}. */
void api_reply_error(const struct api_call *call, int status, const char *code,
                     const char *message);

/* For requests kept waiting on Redis: the copy outlives the handler. */
struct api_call *api_call_keep(const struct api_call *call);
/* Answers and releases a kept call. */
void api_kept_reply_json(struct api_call *call, int status, json_t *body);
/* Answers a kept call with JSON text the caller wrote (len bytes, ending in a newline
 * like api_reply_json's), and releases the call. */
void api_kept_reply_text(struct api_call *call, int status, const char *json, size_t len);
void api_kept_reply_error(struct api_call *call, int status, const char *code,
                          const char *message);

/* True when `Authorization: Bearer <token>` names a configured token, or none are
 * configured. Compares in constant time. */
int api_authorized(const struct api_env *env, struct evhttp_request *req);

/* Handlers, by file. */
void api_webhook_intercom(struct api_call *call);
void api_webhook_customerio(struct api_call *call);
void api_query_user(struct api_call *call, const char *user_id, int suppression);
void api_query_check(struct api_call *call);
void api_admin(struct api_call *call, const char *rest);

/* Answers 405 with an Allow header. */
void api_method_not_allowed(struct api_call *call, const char *allow);

/* Validates a user id from a path or body: 1-256 bytes of UTF-8 without NUL. Returns 0
 * or -1 with a reason. */
int api_valid_user_id(const char *id, size_t len, const char **why);

#endif
