/* api_customerio: Customer.io reporting webhook -> Intercom event. See api_customerio.h. */
#include "api/api_customerio.h"

#include <stdio.h>
#include <string.h>

/* Metadata kept on the Intercom event, in this order (Intercom keeps the first 10 keys it
 * is sent, so the order decides what survives): what was sent, which campaign, which
 * link. Only scalar values are copied: Intercom refuses nested metadata. */
static const char *const METADATA_KEYS[] = {
    "campaign_id", "broadcast_id", "newsletter_id", "transactional_message_id",
    "action_id",   "delivery_id",  "subject",       "href",
    "link_id",     "recipient",    "journey_id",    "content_id",
};

static int copy_string(char *dst, size_t n, const json_t *v) {
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= n)
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* The identifier value, as Intercom wants a string: ids may arrive as numbers. */
static json_t *identifier(const json_t *v) {
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 256)
        return json_string(json_string_value(v));
    if (json_is_integer(v))
        return json_sprintf("%lld", (long long)json_integer_value(v));
    return NULL;
}

enum api_cio_verdict api_cio_parse(const char *body, size_t len, const struct svc_config *cfg,
                                   struct api_cio_event *out, char *why, size_t whylen) {
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    enum api_cio_verdict verdict = API_CIO_INVALID;
    if (root == NULL) {
        snprintf(why, whylen, "body is not JSON: %s", jerr.text);
        return API_CIO_INVALID;
    }
    const json_t *data = json_object_get(root, "data");
    const json_t *ts = json_object_get(root, "timestamp");
    if (!json_is_object(root)) {
        snprintf(why, whylen, "body must be a JSON object");
        goto out;
    }
    if (copy_string(out->event_id, sizeof(out->event_id), json_object_get(root, "event_id")) < 0) {
        snprintf(why, whylen, "event_id must be a non-empty string of at most 127 bytes");
        goto out;
    }
    if (copy_string(out->object_type, sizeof(out->object_type),
                    json_object_get(root, "object_type")) < 0 ||
        copy_string(out->metric, sizeof(out->metric), json_object_get(root, "metric")) < 0) {
        snprintf(why, whylen, "object_type and metric must be non-empty strings");
        goto out;
    }
    if (!json_is_integer(ts) || json_integer_value(ts) <= 0) {
        snprintf(why, whylen, "timestamp must be a positive integer (unix seconds)");
        goto out;
    }
    if (!json_is_object(data)) {
        snprintf(why, whylen, "data must be an object");
        goto out;
    }
    const json_t *ids = json_object_get(data, "identifiers");
    if (ids != NULL && !json_is_null(ids) && !json_is_object(ids)) {
        snprintf(why, whylen, "data.identifiers must be an object");
        goto out;
    }

    const char *name = svc_config_cio_event_name(cfg, out->object_type, out->metric);
    if (name == NULL) {
        snprintf(why, whylen, "%s_%s is not in SUPPRESS_CIO_EVENTS", out->object_type,
                 out->metric);
        verdict = API_CIO_IGNORE;
        goto out;
    }
    json_t *who = identifier(json_object_get(ids, "id"));
    const char *who_key = "user_id";
    if (who == NULL && cfg->cio_email_fallback) {
        who = identifier(json_object_get(ids, "email"));
        who_key = "email";
    }
    if (who == NULL) {
        snprintf(why, whylen, "the person has no identifiers.id%s",
                 cfg->cio_email_fallback ? " and no identifiers.email" : "");
        verdict = API_CIO_IGNORE;
        goto out;
    }
    json_t *ev = json_object();
    json_object_set_new(ev, "event_name", json_string(name));
    json_object_set_new(ev, "created_at", json_integer(json_integer_value(ts)));
    json_object_set_new(ev, who_key, who);
    json_t *meta = json_object();
    size_t nmeta = 0;
    for (size_t i = 0; i < sizeof(METADATA_KEYS) / sizeof(METADATA_KEYS[0]) &&
                       nmeta < API_CIO_MAX_METADATA; i++) {
        const json_t *v = json_object_get(data, METADATA_KEYS[i]);
        if (json_is_string(v) && json_string_length(v) > 0) {
            /* Intercom stores metadata strings of at most 255 characters. */
            const char *str = json_string_value(v);
            size_t n = json_string_length(v);
            if (n > 255) {
                n = 255;
                while (n > 0 && ((unsigned char)str[n] & 0xC0) == 0x80)
                    n--; /* cut before a UTF-8 continuation byte, not inside a character */
            }
            json_object_set_new(meta, METADATA_KEYS[i], json_stringn(str, n));
        } else if (json_is_integer(v) || json_is_real(v)) {
            json_object_set_new(meta, METADATA_KEYS[i], json_deep_copy(v));
        } else {
            continue;
        }
        nmeta++;
    }
    json_object_set_new(ev, "metadata", meta);
    out->event = ev;
    out->user_id = json_string_value(json_object_get(ev, who_key));
    verdict = API_CIO_FORWARD;
out:
    json_decref(root);
    return verdict;
}
