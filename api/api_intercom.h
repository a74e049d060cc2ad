/* api_intercom: Intercom webhook payloads -> struct state_change (pure; no I/O).
 *
 * Reads both API shapes (1.x items with `user`, 2.x items with `contacts`) of every
 * topic the service uses, following the real deliveries in tests/fixtures/intercom/.
 * Open/closed comes from the item itself (`state`, `open`, `ticket_state` as a string or
 * an object with `category`), never from the topic name. Timestamps may be unix integers
 * or ISO-8601 strings. Anything malformed in a field we read is rejected with a reason;
 * fields we do not read are never looked at. */
#ifndef API_INTERCOM_H
#define API_INTERCOM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "state/state_change.h"

#define API_INTERCOM_ID_MAX 256   /* longest user id accepted (the query API's limit) */

struct api_intercom_opts {
    const char *const *churn_tags;  /* lower-case tag names marking churn risk */
    size_t nchurn_tags;
    const char *const *profile_attrs; /* contact attributes copied to Customer.io */
    size_t nprofile_attrs;
};

struct api_jarena;

/* A parsed notification. `chg` borrows strings from `root` and `arena`.
 *
 * Once api_jarena_install has run, the jansson tree (root, profile, synced and all they
 * hold) is carved from `heap`, an arena private to this doc, and api_intercom_free
 * releases it whole without walking the tree. So no node of the doc may be kept beyond
 * api_intercom_free: a json_incref'd node in a longer-lived object, or a doc node
 * decref'd to zero elsewhere, would touch freed memory. Borrowing for the doc's life
 * (json_object_set into a temporary that is dumped and released before the doc, as
 * state_apply does) is fine; nothing may be added to the doc's objects after parsing.
 * The doc must not move in memory (chg points into it); it may be freed on any thread. */
struct api_intercom_doc {
    struct api_jarena *heap;        /* NULL: the tree came from malloc (no hooks, or OOM) */
    json_t *root;
    struct state_change chg;
    int known_topic;                /* 0: acknowledged and counted as "ignored" */
    json_t *profile;                /* owned; chg.profile borrows it */
    json_t *synced;                 /* owned; chg.synced borrows it */
    size_t arena_used;
    char arena[2048];               /* ids that arrived as JSON integers */
};

/* Parses `body` (len bytes, not NUL-terminated) into `doc`. Returns 0, or -1 with a
 * one-line reason in `err` (the caller answers 400). Release with api_intercom_free,
 * also after a failure. */
int api_intercom_parse(struct api_intercom_doc *doc, const char *body, size_t len,
                       const struct api_intercom_opts *opts, char *err, size_t errlen);

/* Parses a conversation or ticket object as Intercom's REST API returns it (backfill,
 * reconciliation) as if a notification had carried it. `source` ("backfill",
 * "reconcile") goes into the synthetic notification id. Same contract as
 * api_intercom_parse. */
int api_intercom_parse_object(struct api_intercom_doc *doc, const json_t *obj, const char *source,
                              const struct api_intercom_opts *opts, char *err, size_t errlen);

/* Releases the parsed document. Safe on a zeroed doc. */
void api_intercom_free(struct api_intercom_doc *doc);

/* 1 (the default): drop the payload members no field read needs before building the tree
 * (api_jskim.h). Tests turn it off to check both ways give the same result. */
extern int api_intercom_skim;

/* Parses an ISO-8601 date-time ("2026-01-10T04:22:28.240+00:00", "...Z") to unix
 * seconds. Returns 0 or -1. Exposed for tests. */
int api_intercom_parse_iso8601(const char *s, int64_t *out);

#endif
