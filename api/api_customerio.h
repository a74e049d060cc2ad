/* api_customerio: a Customer.io reporting webhook -> the Intercom data event it becomes
 * (pure; no I/O).
 *
 * Shape (Customer.io's reporting webhook spec): {"event_id", "object_type", "metric",
 * "timestamp", "data": {"identifiers": {"id", "email", "cio_id"}, campaign/broadcast/
 * newsletter/transactional ids, "action_id", "delivery_id", "subject", "recipient",
 * "href", "link_id", ...}}. The Intercom event is POST /events {"event_name",
 * "created_at", "user_id" (or "email"), "metadata"} with at most 10 flat metadata keys. */
#ifndef API_CUSTOMERIO_H
#define API_CUSTOMERIO_H

#include <stddef.h>

#include <jansson.h>

#include "svc/svc_config.h"

#define API_CIO_MAX_METADATA 10

enum api_cio_verdict {
    API_CIO_FORWARD = 0,   /* queue `event` for Intercom */
    API_CIO_IGNORE = 1,    /* acknowledged, not forwarded (`why` says why) */
    API_CIO_INVALID = -1,  /* malformed: the caller answers 400 with `why` */
};

struct api_cio_event {
    char event_id[128];
    char object_type[32];
    char metric[64];
    json_t *event;         /* owned: the Intercom POST /events body */
    const char *user_id;   /* borrowed from event ("user_id" or "email" value) */
};

/* Parses and maps one webhook body. On API_CIO_FORWARD, release out->event with
 * json_decref. `why` gets a one-line reason for the other verdicts. */
enum api_cio_verdict api_cio_parse(const char *body, size_t len, const struct svc_config *cfg,
                                   struct api_cio_event *out, char *why, size_t whylen);

#endif
