/* svc_backfill: records every ticket that is open in Intercom right now, so the service is
 * correct on the day it is installed, not only for tickets opened afterwards.
 *
 * It pages through POST /conversations/search (state open or snoozed), then
 * POST /tickets/search (state not resolved), and applies each object through the same
 * path as a webhook (api_intercom_parse_object + state_apply): a newer webhook always
 * wins, and reading an object twice is a duplicate. After each page is recorded, the
 * cursor (pages.next.starting_after) is saved in Redis (sd:{bf}:state), so a run that
 * is interrupted resumes where it stopped. One run at a time for all replicas
 * (sd:{bf}:lock, refreshed every page). Every request takes a slot of the shared
 * Intercom rate limit. Progress: a "backfill_page" log line per page, metrics
 * suppressd_backfill_*.
 *
 * Runs from `suppressd backfill` (its own loop) or POST /v1/admin/backfill (on the loop
 * that took the request). */
#ifndef SVC_BACKFILL_H
#define SVC_BACKFILL_H

#include <event2/event.h>
#include <jansson.h>

#include "state/state_store.h"
#include "svc/svc_config.h"
#include "svc/svc_curl.h"

struct svc_backfill;

enum svc_backfill_event {
    SVC_BACKFILL_STARTED,    /* the lock is taken; pages follow */
    SVC_BACKFILL_DONE,       /* every page recorded */
    SVC_BACKFILL_FAILED,     /* `message` says why; progress so far is kept */
};

/* Called on STARTED, then once more on DONE or FAILED (or only once, FAILED, when it
 * could not start). The backfill frees itself after the final call. */
typedef void svc_backfill_fn(enum svc_backfill_event ev, const char *message, void *arg);

/* Starts a run. restart: forget a saved cursor and begin again from the first page.
 * *slot (may be NULL) points at the run while it lives and is reset to NULL when it
 * ends, so an owner can cancel it with svc_backfill_free(*slot). Returns NULL when out
 * of memory (fn is not called). */
struct svc_backfill *svc_backfill_start(struct event_base *base, struct state_store *store,
                                        struct svc_curl *curl, const struct svc_config *cfg,
                                        int restart, svc_backfill_fn *fn, void *arg,
                                        struct svc_backfill **slot);

/* Cancels a run; fn gets one last FAILED "interrupted..." call. The saved cursor stays:
 * the next run resumes. */
void svc_backfill_free(struct svc_backfill *b);

/* Reads the saved progress: fn gets a JSON object (borrowed) or NULL on Redis failure. */
typedef void svc_backfill_status_fn(json_t *status, void *arg);
int svc_backfill_status(struct state_store *store, svc_backfill_status_fn *fn, void *arg);

#endif
