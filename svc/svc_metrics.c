/* svc_metrics: Prometheus metrics. See svc_metrics.h. */
#include "svc/svc_metrics.h"

#include "state/state_outbox.h"
#include "state/state_ulid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "state/state_apply.h"
#include "state/state_store.h"

static const char *route_names[SVC_ROUTE_COUNT] = {
    "webhook_intercom", "webhook_customerio", "user", "suppression", "check",
    "admin", "healthz", "readyz", "metrics", "other",
};

static const char *outcome_names[SVC_WH_OUTCOME_COUNT] = {
    "applied", "duplicate", "ignored", "unauthorized", "invalid", "unavailable",
};

/* Status codes get their own series; anything else is "other". */
static const int codes[] = {200, 202, 400, 401, 404, 405, 413, 500, 503};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

/* Latency buckets, upper bounds in microseconds. */
static const uint64_t bucket_us[] = {250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                     100000, 250000, 500000, 1000000, 5000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static atomic_ulong http_count[SVC_ROUTE_COUNT][NCODES + 1];
static atomic_ulong http_bucket[SVC_ROUTE_COUNT][NBUCKETS + 1];
static atomic_ulong http_sum_us[SVC_ROUTE_COUNT];
static atomic_ulong checked_users;

#define MAX_TOPICS 64
static pthread_mutex_t topic_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char source[16];
    char topic[64];
    atomic_ulong count[SVC_WH_OUTCOME_COUNT];
} topics[MAX_TOPICS];
static int ntopics;

/* Gauges and counters set by subsystems, rendered grouped by family. */
#define MAX_SERIES 64
static pthread_mutex_t series_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *family, *help;
    int counter;
    char labels[128];
    double value;
} series[MAX_SERIES];
static int nseries;

static void series_update(const char *family, const char *help, const char *labels,
                          int counter, double v) {
    pthread_mutex_lock(&series_lock);
    int i;
    for (i = 0; i < nseries; i++) {
        if (strcmp(series[i].family, family) == 0 && strcmp(series[i].labels, labels) == 0)
            break;
    }
    if (i == nseries && nseries < MAX_SERIES) {
        series[i].family = family;
        series[i].help = help;
        series[i].counter = counter;
        snprintf(series[i].labels, sizeof(series[i].labels), "%s", labels);
        nseries++;
    }
    if (i < MAX_SERIES)
        series[i].value = counter ? series[i].value + v : v;
    pthread_mutex_unlock(&series_lock);
}

void svc_metrics_gauge_set(const char *family, const char *help, const char *labels,
                           double value) {
    series_update(family, help, labels, 0, value);
}

void svc_metrics_counter_add(const char *family, const char *help, const char *labels,
                             uint64_t n) {
    series_update(family, help, labels, 1, (double)n);
}

void svc_metrics_http(enum svc_route route, int status, uint64_t micros) {
    size_t ci = NCODES;
    for (size_t i = 0; i < NCODES; i++) {
        if (codes[i] == status) {
            ci = i;
            break;
        }
    }
    size_t bi = NBUCKETS;
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (micros <= bucket_us[i]) {
            bi = i;
            break;
        }
    }
    atomic_fetch_add(&http_count[route][ci], 1);
    atomic_fetch_add(&http_bucket[route][bi], 1);
    atomic_fetch_add(&http_sum_us[route], micros);
}

void svc_metrics_webhook(const char *source, const char *topic, enum svc_webhook_outcome o) {
    if (topic == NULL)
        topic = "";
    pthread_mutex_lock(&topic_lock);
    int found = -1;
    for (int i = 0; i < ntopics; i++) {
        if (strcmp(topics[i].topic, topic) == 0 && strcmp(topics[i].source, source) == 0) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        /* Past the cap, new names share one series rather than growing without bound. */
        if (ntopics == MAX_TOPICS - 1)
            topic = "other";
        for (int i = 0; i < ntopics && found < 0; i++) {
            if (strcmp(topics[i].topic, topic) == 0 && strcmp(topics[i].source, source) == 0)
                found = i;
        }
        if (found < 0) {
            found = ntopics++;
            snprintf(topics[found].source, sizeof(topics[found].source), "%s", source);
            snprintf(topics[found].topic, sizeof(topics[found].topic), "%s", topic);
        }
    }
    pthread_mutex_unlock(&topic_lock);
    atomic_fetch_add(&topics[found].count[o], 1);
}

void svc_metrics_checked_users(uint64_t n) {
    atomic_fetch_add(&checked_users, n);
}

/* Escapes a label value (\, " and newline) into buf. */
static const char *label(const char *s, char *buf, size_t n) {
    size_t j = 0;
    for (; *s && j + 2 < n; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            buf[j++] = '\\';
            buf[j++] = *s == '\n' ? 'n' : *s;
        } else {
            buf[j++] = *s;
        }
    }
    buf[j] = '\0';
    return buf;
}

void svc_metrics_render(struct evbuffer *out) {
    evbuffer_add_printf(out, "# HELP suppressd_http_requests_total HTTP requests answered, "
                             "by route and status code.\n"
                             "# TYPE suppressd_http_requests_total counter\n");
    for (int r = 0; r < SVC_ROUTE_COUNT; r++) {
        for (size_t c = 0; c <= NCODES; c++) {
            unsigned long v = atomic_load(&http_count[r][c]);
            if (v == 0)
                continue;
            char code[8];
            if (c < NCODES)
                snprintf(code, sizeof(code), "%d", codes[c]);
            else
                snprintf(code, sizeof(code), "other");
            evbuffer_add_printf(out, "suppressd_http_requests_total{route=\"%s\",code=\"%s\"} %lu\n",
                                route_names[r], code, v);
        }
    }

    evbuffer_add_printf(out, "# HELP suppressd_http_request_duration_seconds Time from request "
                             "to answer.\n"
                             "# TYPE suppressd_http_request_duration_seconds histogram\n");
    for (int r = 0; r < SVC_ROUTE_COUNT; r++) {
        unsigned long cum = 0;
        unsigned long total = 0;
        for (size_t b = 0; b <= NBUCKETS; b++)
            total += atomic_load(&http_bucket[r][b]);
        if (total == 0)
            continue;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += atomic_load(&http_bucket[r][b]);
            evbuffer_add_printf(out, "suppressd_http_request_duration_seconds_bucket{route=\"%s\","
                                     "le=\"%g\"} %lu\n",
                                route_names[r], (double)bucket_us[b] / 1e6, cum);
        }
        evbuffer_add_printf(out, "suppressd_http_request_duration_seconds_bucket{route=\"%s\","
                                 "le=\"+Inf\"} %lu\n", route_names[r], total);
        evbuffer_add_printf(out, "suppressd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                            route_names[r], (double)atomic_load(&http_sum_us[r]) / 1e6);
        evbuffer_add_printf(out, "suppressd_http_request_duration_seconds_count{route=\"%s\"} %lu\n",
                            route_names[r], total);
    }

    evbuffer_add_printf(out, "# HELP suppressd_webhooks_total Webhook deliveries by source, "
                             "topic and outcome.\n"
                             "# TYPE suppressd_webhooks_total counter\n");
    pthread_mutex_lock(&topic_lock);
    int n = ntopics;
    pthread_mutex_unlock(&topic_lock);
    for (int i = 0; i < n; i++) {
        char tb[160];
        for (int o = 0; o < SVC_WH_OUTCOME_COUNT; o++) {
            unsigned long v = atomic_load(&topics[i].count[o]);
            if (v == 0)
                continue;
            evbuffer_add_printf(out, "suppressd_webhooks_total{source=\"%s\",topic=\"%s\","
                                     "outcome=\"%s\"} %lu\n",
                                topics[i].source, label(topics[i].topic, tb, sizeof(tb)),
                                outcome_names[o], v);
        }
    }

    evbuffer_add_printf(out,
                        "# HELP suppressd_checked_users_total User ids answered by "
                        "POST /v1/suppression/check.\n"
                        "# TYPE suppressd_checked_users_total counter\n"
                        "suppressd_checked_users_total %lu\n"
                        "# HELP suppressd_redis_errors_total Redis commands failed by a lost, "
                        "refused or timed-out connection.\n"
                        "# TYPE suppressd_redis_errors_total counter\n"
                        "suppressd_redis_errors_total %lu\n"
                        "# HELP suppressd_redis_connects_total Redis connection attempts.\n"
                        "# TYPE suppressd_redis_connects_total counter\n"
                        "suppressd_redis_connects_total %lu\n"
                        "# HELP suppressd_identity_moves_total State moved from one identity to "
                        "another (contact linked or merged).\n"
                        "# TYPE suppressd_identity_moves_total counter\n"
                        "suppressd_identity_moves_total %lu\n",
                        atomic_load(&checked_users), state_store_errors_total(),
                        state_store_reconnects_total(), state_apply_moves_total());

    pthread_mutex_lock(&series_lock);
    for (int i = 0; i < nseries; i++) {
        int first = 1;
        for (int j = 0; j < i; j++)
            first &= strcmp(series[j].family, series[i].family) != 0;
        if (!first)
            continue;
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[i].family,
                            series[i].help, series[i].family,
                            series[i].counter ? "counter" : "gauge");
        for (int j = i; j < nseries; j++) {
            if (strcmp(series[j].family, series[i].family) != 0)
                continue;
            if (series[j].labels[0])
                evbuffer_add_printf(out, "%s{%s} %.17g\n", series[j].family, series[j].labels,
                                    series[j].value);
            else
                evbuffer_add_printf(out, "%s %.17g\n", series[j].family, series[j].value);
        }
    }
    pthread_mutex_unlock(&series_lock);
}

void svc_metrics_queue_stats(const struct state_outbox_stats *st, void *destination) {
    if (st == NULL)
        return;
    char labels[64];
    snprintf(labels, sizeof(labels), "destination=\"%s\"", (const char *)destination);
    svc_metrics_gauge_set("suppressd_queue_depth", "Work waiting for a write, by destination.",
                          labels, (double)st->depth);
    svc_metrics_gauge_set("suppressd_queue_oldest_age_seconds",
                          "How long the most overdue queued item has been due.", labels,
                          state_outbox_oldest_age_s(st, (int64_t)state_now_ms()));
    svc_metrics_gauge_set("suppressd_dead_letters", "Dead letters stored, by destination.",
                          labels, (double)st->dead_letters);
}
