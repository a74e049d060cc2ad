/* state_rules: which campaigns a user's support state suppresses, and why.
 *
 * Pure code: no Redis, no clock reads. A rule set maps each campaign name to the
 * conditions that suppress it; each condition has its own time window. The built-in set
 * is the contract's default table; SUPPRESS_RULES_FILE replaces parts of it (see
 * state_rules_parse_json for the file format). */
#ifndef STATE_RULES_H
#define STATE_RULES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Conditions, also the reason strings in answers ("open_ticket", ...). */
enum state_cond {
    STATE_COND_OPEN_TICKET = 0,
    STATE_COND_RECENT_PRIORITY_TICKET = 1,
    STATE_COND_LOW_CSAT = 2,
    STATE_COND_CHURN_RISK = 3,
    STATE_COND_COUNT = 4,
};

#define STATE_RULES_MAX_CAMPAIGNS 32
#define STATE_RULES_NAME_MAX 64

struct state_campaign {
    char name[STATE_RULES_NAME_MAX];
    unsigned conds; /* bit set of (1u << enum state_cond), in reason order */
};

struct state_rules {
    int64_t priority_window;   /* seconds a priority ticket counts after it opened */
    int64_t csat_window;       /* seconds a low CSAT rating counts */
    int64_t churn_window;      /* seconds a churn-risk tag counts */
    int low_csat_max;          /* a rating <= this is "low" */
    size_t ncampaigns;
    struct state_campaign campaigns[STATE_RULES_MAX_CAMPAIGNS];
};

/* The facts about one user that the rules read. Times are unix seconds, 0 = never. */
struct state_facts {
    int64_t open_tickets;       /* number of open (or snoozed) tickets */
    int64_t priority_opened_at; /* latest opened_at among tickets marked priority */
    int64_t churn_tagged_at;    /* latest churn-risk tag time */
    int64_t churn_untagged_at;  /* latest removal of a churn-risk tag */
    int64_t csat_score;         /* last rating, 0 = none */
    int64_t csat_at;            /* time of the last rating */
};

/* Fills `rules` with the contract's default table. Can't fail. */
void state_rules_default(struct state_rules *rules);

/* Overrides `rules` (already holding defaults) from a rules document:
 *
 *   {"windows": {"recent_priority_ticket": 604800, "low_csat": 2592000,
 *                "churn_risk": 1209600},            seconds, all optional
 *    "low_csat_max": 2,                              optional
 *    "campaigns": {"renewal": ["open_ticket", "low_csat"], ...}}   replaces the table
 *
 * Returns 0, or -1 with a one-line reason in `err` (rules unchanged on error). */
int state_rules_parse_json(struct state_rules *rules, const json_t *doc, char *err,
                           size_t errlen);

/* Returns the campaign named `name`, or NULL. Borrowed from `rules`. */
const struct state_campaign *state_rules_find(const struct state_rules *rules,
                                              const char *name);

/* Evaluates every condition for `facts` at time `now`. Returns the bit set of conditions
 * that hold (1u << enum state_cond). Can't fail. */
unsigned state_rules_conditions(const struct state_rules *rules,
                                const struct state_facts *facts, int64_t now);

/* True while the churn-risk tag is inside its window and not removed since. */
int state_rules_churn_active(const struct state_rules *rules, const struct state_facts *facts,
                             int64_t now);

/* The reason string of a condition ("open_ticket", ...). */
const char *state_cond_name(enum state_cond cond);

#endif
