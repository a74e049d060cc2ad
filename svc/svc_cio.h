/* svc_cio: what suppressd sends to Customer.io, as pure functions (no I/O).
 *
 * Attributes are derived from a user's state at send time (so bursts coalesce and the
 * last write wins); events come from the records apply.lua wrote, renamed and filtered
 * by the event taxonomy. Requests are Track API v2 batch operations or v1 bodies.
 * Customer.io's documented limits are checked here, before sending: an item that would
 * be refused anyway becomes a dead letter with a clear reason instead of a retry loop. */
#ifndef SVC_CIO_H
#define SVC_CIO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "state/state_rules.h"
#include "state/state_user.h"

/* Track API limits (docs.customer.io "Limits"). */
#define CIO_MAX_ID_BYTES 150
#define CIO_MAX_ATTR_NAME_BYTES 150
#define CIO_MAX_ATTR_VALUE_BYTES 1000
#define CIO_MAX_EVENT_NAME_BYTES 100
#define CIO_MAX_EVENT_DATA_BYTES 100000
#define CIO_MAX_ITEM_BYTES (32 * 1024)
#define CIO_MAX_BATCH_BYTES (500 * 1000)

/* The seed events apply.lua records. */
enum cio_event_kind {
    CIO_EV_TICKET_OPENED = 0,
    CIO_EV_TAG_APPLIED,
    CIO_EV_CSAT_SUBMITTED,
    CIO_EV_TICKET_RESOLVED,
    CIO_EV_USER_SYNCED,
    CIO_EV_COUNT
};

#define CIO_MAX_PROPS 16

/* Per event: whether it is sent, under which name, with which properties. */
struct cio_taxonomy {
    struct {
        int enabled;
        char name[CIO_MAX_EVENT_NAME_BYTES + 1];
        size_t nprops;               /* 0: every property the record carries */
        char props[CIO_MAX_PROPS][64];
    } ev[CIO_EV_COUNT];
};

/* The defaults: the seed taxonomy, every event on, its own name, its listed properties. */
void cio_taxonomy_default(struct cio_taxonomy *t);

/* Overrides from a document {"support_ticket_opened": {"name": "...", "properties":
 * [...]}, "intercom_user_synced": false, ...}. Returns 0 or -1 with err. */
int cio_taxonomy_parse(struct cio_taxonomy *t, const json_t *doc, char *err, size_t errlen);

/* The identify attributes of a user at time `now`: has_open_ticket, open_ticket_count,
 * churn_risk, last_csat_score / last_csat_at / churn_risk_at (when known), one
 * support_suppressed_<campaign> per rule, the profile attributes, `_update: true` and
 * `_timestamp: now`. Returns a new reference. */
json_t *cio_attributes(const struct state_user *u, const json_t *profile,
                       const struct state_rules *rules, int64_t now);

/* When the next rule window of this user ends after `now` (unix seconds), 0 for none:
 * that is when its attributes change without any webhook. */
int64_t cio_next_window_end(const struct state_user *u, const struct state_rules *rules,
                            int64_t now);

/* Renders an event record {"id","name","ts","data"} for sending: returns a new object
 * {"name", "id", "timestamp", "data"} or NULL when the taxonomy disables it or the record
 * is unreadable (*why says which). */
json_t *cio_event(const char *record, const struct cio_taxonomy *t, const char **why);

/* Checks an identify's attributes and the id against Customer.io's limits. Returns NULL
 * when fine, else a reason ("id_too_long: ...", "attribute_value_too_long: plan (1500
 * bytes, limit 1000)", ...), in buf or static. cio_check_attribute checks one attribute. */
const char *cio_check_attribute(const char *name, const json_t *value, char *buf,
                                size_t buflen);
const char *cio_check_identify(const char *uid, const json_t *attributes, char *buf,
                               size_t buflen);
const char *cio_check_event(const json_t *event, char *buf, size_t buflen);

/* v2 batch operations (new references). */
json_t *cio_op_identify(const char *uid, const json_t *attributes, int64_t now);
json_t *cio_op_event(const char *uid, const json_t *event);

/* v1: the identify body is the attributes; the event body is {name, id, timestamp, data}. */
json_t *cio_v1_event_body(const json_t *event);

/* Percent-encodes an identifier for a URL path (everything but unreserved characters),
 * as Customer.io asks. Returns a new string (free()). */
char *cio_path_escape(const char *id);

/* Parses a v2 batch answer's per-item errors: for each {"batch_index": i, ...} calls
 * fn(i, message). Returns the number of errors, or -1 when the body is not JSON. */
typedef void cio_item_error_fn(size_t index, const char *message, void *arg);
int cio_batch_errors(const char *body, size_t len, cio_item_error_fn *fn, void *arg);

#endif
