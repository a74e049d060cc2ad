/* state_rules: suppression rules. See state_rules.h. */
#include "state/state_rules.h"

#include <stdio.h>
#include <string.h>

static const char *cond_names[STATE_COND_COUNT] = {
    "open_ticket",
    "recent_priority_ticket",
    "low_csat",
    "churn_risk",
};

const char *state_cond_name(enum state_cond cond) {
    return (unsigned)cond < STATE_COND_COUNT ? cond_names[cond] : "unknown";
}

static int cond_from_name(const char *name) {
    for (int i = 0; i < STATE_COND_COUNT; i++) {
        if (strcmp(cond_names[i], name) == 0)
            return i;
    }
    return -1;
}

static void add_campaign(struct state_rules *rules, const char *name, unsigned conds) {
    struct state_campaign *c = &rules->campaigns[rules->ncampaigns++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->conds = conds;
}

void state_rules_default(struct state_rules *rules) {
    memset(rules, 0, sizeof(*rules));
    rules->priority_window = 7 * 86400;
    rules->csat_window = 30 * 86400;
    rules->churn_window = 14 * 86400;
    rules->low_csat_max = 2;
    add_campaign(rules, "commercial", 1u << STATE_COND_OPEN_TICKET);
    add_campaign(rules, "expansion",
                 1u << STATE_COND_OPEN_TICKET | 1u << STATE_COND_RECENT_PRIORITY_TICKET);
    add_campaign(rules, "renewal", 1u << STATE_COND_OPEN_TICKET | 1u << STATE_COND_LOW_CSAT);
    add_campaign(rules, "feature_adoption", 1u << STATE_COND_CHURN_RISK);
}

/* Reads an optional positive integer member; 0 when absent, -1 when present but bad. */
static int read_window(const json_t *obj, const char *key, int64_t *out) {
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

int state_rules_parse_json(struct state_rules *rules, const json_t *doc, char *err,
                           size_t errlen) {
    struct state_rules next = *rules;
    const char *key;
    json_t *val;

    if (!json_is_object(doc)) {
        snprintf(err, errlen, "rules must be a JSON object");
        return -1;
    }
    json_object_foreach((json_t *)(uintptr_t)doc, key, val) {
        if (strcmp(key, "windows") && strcmp(key, "low_csat_max") && strcmp(key, "campaigns")) {
            snprintf(err, errlen, "unknown rules key \"%s\" (expected windows, low_csat_max, "
                     "campaigns)", key);
            return -1;
        }
    }

    const json_t *windows = json_object_get(doc, "windows");
    if (windows != NULL) {
        if (!json_is_object(windows)) {
            snprintf(err, errlen, "\"windows\" must be an object of seconds");
            return -1;
        }
        json_object_foreach((json_t *)(uintptr_t)windows, key, val) {
            int c = cond_from_name(key);
            if (c != STATE_COND_RECENT_PRIORITY_TICKET && c != STATE_COND_LOW_CSAT &&
                c != STATE_COND_CHURN_RISK) {
                snprintf(err, errlen, "unknown window \"%s\" (expected "
                         "recent_priority_ticket, low_csat, churn_risk)", key);
                return -1;
            }
        }
        if (read_window(windows, "recent_priority_ticket", &next.priority_window) < 0 ||
            read_window(windows, "low_csat", &next.csat_window) < 0 ||
            read_window(windows, "churn_risk", &next.churn_window) < 0) {
            snprintf(err, errlen, "window lengths must be positive integers (seconds)");
            return -1;
        }
    }

    const json_t *low = json_object_get(doc, "low_csat_max");
    if (low != NULL) {
        if (!json_is_integer(low) || json_integer_value(low) < 1 ||
            json_integer_value(low) > 5) {
            snprintf(err, errlen, "\"low_csat_max\" must be an integer from 1 to 5");
            return -1;
        }
        next.low_csat_max = (int)json_integer_value(low);
    }

    const json_t *campaigns = json_object_get(doc, "campaigns");
    if (campaigns != NULL) {
        if (!json_is_object(campaigns) || json_object_size(campaigns) == 0) {
            snprintf(err, errlen, "\"campaigns\" must be a non-empty object");
            return -1;
        }
        if (json_object_size(campaigns) > STATE_RULES_MAX_CAMPAIGNS) {
            snprintf(err, errlen, "at most %d campaigns", STATE_RULES_MAX_CAMPAIGNS);
            return -1;
        }
        next.ncampaigns = 0;
        json_object_foreach((json_t *)(uintptr_t)campaigns, key, val) {
            size_t klen = strlen(key);
            if (klen == 0 || klen >= STATE_RULES_NAME_MAX) {
                snprintf(err, errlen, "campaign names must be 1 to %d bytes",
                         STATE_RULES_NAME_MAX - 1);
                return -1;
            }
            for (size_t i = 0; i < klen; i++) {
                char ch = key[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                      ch == '-')) {
                    snprintf(err, errlen, "campaign \"%s\": names use a-z, 0-9, _ and -", key);
                    return -1;
                }
            }
            if (!json_is_array(val) || json_array_size(val) == 0) {
                snprintf(err, errlen, "campaign \"%s\" needs a non-empty list of conditions",
                         key);
                return -1;
            }
            unsigned conds = 0;
            size_t i;
            json_t *c;
            json_array_foreach(val, i, c) {
                int idx = json_is_string(c) ? cond_from_name(json_string_value(c)) : -1;
                if (idx < 0) {
                    snprintf(err, errlen, "campaign \"%s\": unknown condition (expected "
                             "open_ticket, recent_priority_ticket, low_csat, churn_risk)", key);
                    return -1;
                }
                conds |= 1u << idx;
            }
            add_campaign(&next, key, conds);
        }
    }
    *rules = next;
    return 0;
}

const struct state_campaign *state_rules_find(const struct state_rules *rules,
                                              const char *name) {
    for (size_t i = 0; i < rules->ncampaigns; i++) {
        if (strcmp(rules->campaigns[i].name, name) == 0)
            return &rules->campaigns[i];
    }
    return NULL;
}

/* An event at time `at` counts while fewer than `window` seconds have passed since it.
 * Events stamped in the future (clock skew between Intercom and us) count too. */
static int within(int64_t at, int64_t window, int64_t now) {
    return at > 0 && now - at < window;
}

int state_rules_churn_active(const struct state_rules *rules, const struct state_facts *facts,
                             int64_t now) {
    return facts->churn_tagged_at > facts->churn_untagged_at &&
           within(facts->churn_tagged_at, rules->churn_window, now);
}

unsigned state_rules_conditions(const struct state_rules *rules,
                                const struct state_facts *facts, int64_t now) {
    unsigned held = 0;
    if (facts->open_tickets > 0)
        held |= 1u << STATE_COND_OPEN_TICKET;
    if (within(facts->priority_opened_at, rules->priority_window, now))
        held |= 1u << STATE_COND_RECENT_PRIORITY_TICKET;
    if (facts->csat_score > 0 && facts->csat_score <= rules->low_csat_max &&
        within(facts->csat_at, rules->csat_window, now))
        held |= 1u << STATE_COND_LOW_CSAT;
    if (state_rules_churn_active(rules, facts, now))
        held |= 1u << STATE_COND_CHURN_RISK;
    return held;
}
