/* svc_intercom: the Intercom worker, one per event loop.
 *
 * It runs the jobs of state_jobs: forwards Customer.io reporting events to Intercom's
 * Data Events API, looks up contacts whose external_id is unknown (then links them, which
 * moves their intercom:<id> state to the user), and re-checks tickets open longer than
 * SUPPRESS_RECONCILE_AGE (then applies what Intercom says, under the same version guard
 * as webhooks). Loop 0 of every replica also queues those re-checks, each partition at
 * most once per SUPPRESS_RECONCILE_INTERVAL for all replicas together.
 *
 * Outcomes:
 *   2xx                      done (a look-up or re-check applies its answer first)
 *   404                      event: dead letter "unknown_user"; look-up: done (contact
 *                            gone); re-check: the ticket is deleted
 *   other 4xx                dead letter "rejected: HTTP n" with Intercom's answer
 *   429                      waits until X-RateLimit-Reset (not counted as a failure)
 *   408, 5xx, network        retried with backoff for SUPPRESS_SYNC_GIVE_UP, then dead
 *                            letter "retries_exhausted"
 *   401, 403                 everything pauses, /readyz says "unauthorized", a probe
 *                            resumes it; nothing is dead-lettered
 * Without INTERCOM_ACCESS_TOKEN each request is logged ("intercom_dry_run") and done. */
#ifndef SVC_INTERCOM_H
#define SVC_INTERCOM_H

#include <event2/event.h>

#include "state/state_store.h"
#include "svc/svc_config.h"
#include "svc/svc_curl.h"

struct svc_intercom;

struct svc_intercom *svc_intercom_new(struct event_base *base, struct state_store *store,
                                      struct svc_curl *curl, const struct svc_config *cfg,
                                      int index);
void svc_intercom_stop(struct svc_intercom *w);
int svc_intercom_idle(const struct svc_intercom *w);
/* Call after svc_curl_free and state_store_free, as for svc_sync_free. */
void svc_intercom_free(struct svc_intercom *w);

/* "live", "dry_run" or "unauthorized: <why>", for /readyz. Process-wide. */
const char *svc_intercom_status(void);

/* Shared with the backfill: request headers for Intercom (NULL-terminated, static
 * storage per thread) and the shared rate limit's per-window budget. */
const char *const *svc_intercom_headers(const struct svc_config *cfg);
#define SVC_INTERCOM_WINDOW_MS 10000
int svc_intercom_window_budget(const struct svc_config *cfg);

/* The state_apply options every Intercom-derived change uses. */
struct state_apply_opts;
void svc_intercom_apply_opts(const struct svc_config *cfg, struct state_apply_opts *o);

#endif
