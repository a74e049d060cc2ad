/* svc_metrics: process-wide counters and histograms, rendered as Prometheus text.
 *
 * Every event loop updates the same atomics, so /metrics on any loop shows the whole
 * process. Label values are bounded: routes and outcomes are enums, and webhook topics
 * come only from signed requests (Intercom's own topic set), capped at 64 names. */
#ifndef SVC_METRICS_H
#define SVC_METRICS_H

#include <stdint.h>

#include <event2/buffer.h>

enum svc_route {
    SVC_ROUTE_WEBHOOK_INTERCOM = 0,
    SVC_ROUTE_WEBHOOK_CUSTOMERIO,
    SVC_ROUTE_USER,
    SVC_ROUTE_SUPPRESSION,
    SVC_ROUTE_CHECK,
    SVC_ROUTE_ADMIN,
    SVC_ROUTE_HEALTH,
    SVC_ROUTE_READY,
    SVC_ROUTE_METRICS,
    SVC_ROUTE_OTHER,
    SVC_ROUTE_COUNT
};

enum svc_webhook_outcome {
    SVC_WH_APPLIED = 0,      /* recorded in Redis */
    SVC_WH_DUPLICATE,        /* already recorded: answered 200, nothing changed */
    SVC_WH_IGNORED,          /* ping or a topic the service does not use */
    SVC_WH_UNAUTHORIZED,     /* 401 */
    SVC_WH_INVALID,          /* 400 */
    SVC_WH_UNAVAILABLE,      /* 503: Redis down or not configured */
    SVC_WH_OUTCOME_COUNT
};

/* Records one answered HTTP request. */
void svc_metrics_http(enum svc_route route, int status, uint64_t micros);

/* Records one webhook outcome; topic NULL for requests rejected before parsing. */
void svc_metrics_webhook(const char *source, const char *topic, enum svc_webhook_outcome o);

/* Adds n user ids answered by the batch check. */
void svc_metrics_checked_users(uint64_t n);

/* A gauge a subsystem sets (queue depth, ...). `family` and `help` must be static
 * strings; `labels` is the label set without braces ("destination=\"customerio\"") or
 * "" and is copied. At most 64 series. */
void svc_metrics_gauge_set(const char *family, const char *help, const char *labels,
                           double value);

/* Publishes a destination's queue gauges (depth, oldest age, dead letters). Has the shape
 * of state_outbox_stats_fn: pass the destination name ("customerio", "intercom") as the
 * argument. A NULL st (Redis failed) leaves the gauges as they were. */
struct state_outbox_stats;
void svc_metrics_queue_stats(const struct state_outbox_stats *st, void *destination);

/* Adds n to a counter series, same naming rules as gauges. */
void svc_metrics_counter_add(const char *family, const char *help, const char *labels,
                             uint64_t n);

/* Appends the Prometheus text exposition of every metric to out. */
void svc_metrics_render(struct evbuffer *out);

#endif
