/* svc_cio: Customer.io payloads. See svc_cio.h. */
#include "svc/svc_cio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const seed_names[CIO_EV_COUNT] = {
    "support_ticket_opened", "support_tag_applied", "csat_score_submitted",
    "support_ticket_resolved", "intercom_user_synced",
};

static const char *const seed_props[CIO_EV_COUNT][4] = {
    {"ticket_id", "priority", "category", NULL},
    {"tag_name", "ticket_id", NULL},
    {"score", "ticket_id", NULL},
    {"ticket_id", "resolution_time_hrs", NULL},
    {"plan", "mrr", "signup_date", NULL},
};

void cio_taxonomy_default(struct cio_taxonomy *t) {
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < CIO_EV_COUNT; i++) {
        t->ev[i].enabled = 1;
        snprintf(t->ev[i].name, sizeof(t->ev[i].name), "%s", seed_names[i]);
        for (int j = 0; seed_props[i][j] != NULL; j++)
            snprintf(t->ev[i].props[t->ev[i].nprops++], 64, "%s", seed_props[i][j]);
    }
}

static int kind_of(const char *name) {
    for (int i = 0; i < CIO_EV_COUNT; i++) {
        if (strcmp(seed_names[i], name) == 0)
            return i;
    }
    return -1;
}

int cio_taxonomy_parse(struct cio_taxonomy *t, const json_t *doc, char *err, size_t errlen) {
    struct cio_taxonomy next = *t;
    const char *key;
    json_t *val;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "the event taxonomy must be a JSON object");
        return -1;
    }
    json_object_foreach((json_t *)(uintptr_t)doc, key, val) {
        int k = kind_of(key);
        if (k < 0) {
            snprintf(err, errlen, "unknown event \"%s\" (expected support_ticket_opened, "
                     "support_tag_applied, csat_score_submitted, support_ticket_resolved, "
                     "intercom_user_synced)", key);
            return -1;
        }
        if (json_is_boolean(val)) {
            next.ev[k].enabled = json_is_true(val);
            continue;
        }
        if (!json_is_object(val)) {
            snprintf(err, errlen, "event \"%s\": expected true, false or an object", key);
            return -1;
        }
        const json_t *en = json_object_get(val, "enabled"), *name = json_object_get(val, "name");
        const json_t *props = json_object_get(val, "properties");
        if (en != NULL) {
            if (!json_is_boolean(en)) {
                snprintf(err, errlen, "event \"%s\": \"enabled\" must be a boolean", key);
                return -1;
            }
            next.ev[k].enabled = json_is_true(en);
        }
        if (name != NULL) {
            if (!json_is_string(name) || json_string_length(name) == 0 ||
                json_string_length(name) > CIO_MAX_EVENT_NAME_BYTES) {
                snprintf(err, errlen, "event \"%s\": \"name\" must be 1 to %d bytes", key,
                         CIO_MAX_EVENT_NAME_BYTES);
                return -1;
            }
            snprintf(next.ev[k].name, sizeof(next.ev[k].name), "%s", json_string_value(name));
        }
        if (props != NULL) {
            if (!json_is_array(props) || json_array_size(props) > CIO_MAX_PROPS) {
                snprintf(err, errlen, "event \"%s\": \"properties\" must be a list of at most "
                         "%d names", key, CIO_MAX_PROPS);
                return -1;
            }
            next.ev[k].nprops = 0;
            size_t i;
            json_t *p;
            json_array_foreach(props, i, p) {
                if (!json_is_string(p) || json_string_length(p) == 0 ||
                    json_string_length(p) >= 64) {
                    snprintf(err, errlen, "event \"%s\": property names are strings of 1 to 63 "
                             "bytes", key);
                    return -1;
                }
                snprintf(next.ev[k].props[next.ev[k].nprops++], 64, "%s", json_string_value(p));
            }
        }
    }
    *t = next;
    return 0;
}

json_t *cio_attributes(const struct state_user *u, const json_t *profile,
                       const struct state_rules *rules, int64_t now) {
    json_t *a = json_object();
    /* Profile attributes first: the support attributes below always win a name clash. */
    if (profile != NULL)
        json_object_update(a, (json_t *)(uintptr_t)profile);
    const struct state_facts *f = &u->facts;
    unsigned held = state_rules_conditions(rules, f, now);
    json_object_set_new(a, "has_open_ticket", json_boolean(u->ntickets > 0));
    json_object_set_new(a, "open_ticket_count", json_integer((json_int_t)u->ntickets));
    json_object_set_new(a, "churn_risk", json_boolean(state_rules_churn_active(rules, f, now)));
    if (f->csat_score > 0) {
        json_object_set_new(a, "last_csat_score", json_integer(f->csat_score));
        json_object_set_new(a, "last_csat_at", json_integer(f->csat_at));
    }
    if (f->churn_tagged_at > 0)
        json_object_set_new(a, "churn_risk_at", json_integer(f->churn_tagged_at));
    for (size_t i = 0; i < rules->ncampaigns; i++) {
        char name[STATE_RULES_NAME_MAX + 32];
        snprintf(name, sizeof(name), "support_suppressed_%s", rules->campaigns[i].name);
        json_object_set_new(a, name, json_boolean((held & rules->campaigns[i].conds) != 0));
    }
    json_object_set_new(a, "_update", json_true());
    json_object_set_new(a, "_timestamp", json_integer(now));
    return a;
}

static void consider(int64_t *best, int64_t end, int64_t now) {
    if (end > now && (*best == 0 || end < *best))
        *best = end;
}

int64_t cio_next_window_end(const struct state_user *u, const struct state_rules *rules,
                            int64_t now) {
    const struct state_facts *f = &u->facts;
    int64_t best = 0;
    if (f->priority_opened_at > 0)
        consider(&best, f->priority_opened_at + rules->priority_window, now);
    if (f->csat_score > 0 && f->csat_score <= rules->low_csat_max && f->csat_at > 0)
        consider(&best, f->csat_at + rules->csat_window, now);
    if (state_rules_churn_active(rules, f, now))
        consider(&best, f->churn_tagged_at + rules->churn_window, now);
    return best;
}

json_t *cio_event(const char *record, const struct cio_taxonomy *t, const char **why) {
    json_t *rec = json_loads(record, 0, NULL);
    const char *name = rec ? json_string_value(json_object_get(rec, "name")) : NULL;
    const char *id = rec ? json_string_value(json_object_get(rec, "id")) : NULL;
    json_t *data = rec ? json_object_get(rec, "data") : NULL;
    int k = name ? kind_of(name) : -1;
    if (k < 0 || id == NULL) {
        *why = "unreadable_event_record";
        json_decref(rec);
        return NULL;
    }
    if (!t->ev[k].enabled) {
        *why = "event_disabled";
        json_decref(rec);
        return NULL;
    }
    json_t *out = json_object(), *d = json_object();
    json_object_set_new(out, "name", json_string(t->ev[k].name));
    json_object_set_new(out, "id", json_string(id));
    json_object_set_new(out, "timestamp", json_integer(json_integer_value(json_object_get(rec, "ts"))));
    if (json_is_object(data)) {
        for (size_t i = 0; i < t->ev[k].nprops; i++) {
            json_t *v = json_object_get(data, t->ev[k].props[i]);
            if (v != NULL && !json_is_null(v))
                json_object_set(d, t->ev[k].props[i], v);
        }
        if (t->ev[k].nprops == 0)
            json_object_update(d, data);
    }
    json_object_set_new(out, "data", d);
    json_decref(rec);
    return out;
}

const char *cio_check_attribute(const char *name, const json_t *value, char *buf,
                                size_t buflen) {
    if (strlen(name) > CIO_MAX_ATTR_NAME_BYTES) {
        snprintf(buf, buflen, "attribute_name_too_long: %.40s... (%zu bytes, limit 150)", name,
                 strlen(name));
        return buf;
    }
    size_t len = json_is_string(value) ? json_string_length(value) : 0;
    if (!json_is_string(value) && !json_is_null(value) && !json_is_boolean(value) &&
        !json_is_number(value)) {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        len = text ? strlen(text) : 0;
        free(text);
    }
    if (len > CIO_MAX_ATTR_VALUE_BYTES) {
        snprintf(buf, buflen, "attribute_value_too_long: %.64s (%zu bytes, limit 1000)", name,
                 len);
        return buf;
    }
    return NULL;
}

const char *cio_check_identify(const char *uid, const json_t *attributes, char *buf,
                               size_t buflen) {
    if (strlen(uid) > CIO_MAX_ID_BYTES)
        return "id_too_long: Customer.io ids are at most 150 bytes";
    if (json_object_size(attributes) > 300)
        return "too_many_attributes: at most 300 per person";
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)attributes, key, v) {
        const char *bad = cio_check_attribute(key, v, buf, buflen);
        if (bad != NULL)
            return bad;
    }
    return NULL;
}

const char *cio_check_event(const json_t *event, char *buf, size_t buflen) {
    const char *name = json_string_value(json_object_get(event, "name"));
    if (name == NULL || strlen(name) > CIO_MAX_EVENT_NAME_BYTES)
        return "event_name_too_long: at most 100 bytes";
    char *text = json_dumps(json_object_get(event, "data"), JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (len > CIO_MAX_EVENT_DATA_BYTES) {
        snprintf(buf, buflen, "event_data_too_long: %zu bytes, limit 100000", len);
        return buf;
    }
    return NULL;
}

static json_t *person(const char *uid, const char *action) {
    json_t *op = json_object(), *ids = json_object();
    json_object_set_new(op, "type", json_string("person"));
    json_object_set_new(ids, "id", json_string(uid));
    json_object_set_new(op, "identifiers", ids);
    json_object_set_new(op, "action", json_string(action));
    return op;
}

json_t *cio_op_identify(const char *uid, const json_t *attributes, int64_t now) {
    json_t *op = person(uid, "identify");
    json_object_set_new(op, "timestamp", json_integer(now));
    json_object_set(op, "attributes", (json_t *)(uintptr_t)attributes);
    return op;
}

json_t *cio_op_event(const char *uid, const json_t *event) {
    json_t *op = person(uid, "event");
    json_object_set(op, "name", json_object_get(event, "name"));
    json_object_set(op, "id", json_object_get(event, "id"));
    json_object_set(op, "timestamp", json_object_get(event, "timestamp"));
    json_object_set(op, "attributes", json_object_get(event, "data"));
    return op;
}

json_t *cio_v1_event_body(const json_t *event) {
    return json_deep_copy(event);
}

char *cio_path_escape(const char *id) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(id);
    char *out = malloc(3 * n + 1);
    if (out == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        }
    }
    out[j] = '\0';
    return out;
}

int cio_batch_errors(const char *body, size_t len, cio_item_error_fn *fn, void *arg) {
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (doc == NULL)
        return -1;
    const json_t *errors = json_object_get(doc, "errors");
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        const json_t *idx = json_object_get(e, "batch_index");
        if (!json_is_integer(idx) || json_integer_value(idx) < 0)
            continue;
        const char *msg = json_string_value(json_object_get(e, "message"));
        const char *reason = json_string_value(json_object_get(e, "reason"));
        char buf[512];
        snprintf(buf, sizeof(buf), "%s%s%s", reason ? reason : "", reason && msg ? ": " : "",
                 msg ? msg : "");
        fn((size_t)json_integer_value(idx), buf, arg);
        n++;
    }
    json_decref(doc);
    return n;
}
