/* svc_sync: the Customer.io delivery worker, one per event loop.
 *
 * A round: lease due users from a few partitions (state_outbox), read their state and
 * events, build requests (one /api/v2/batch per up to SUPPRESS_SYNC_BATCH users, or v1
 * calls), claim a slot of the shared rate limit for each, send them with libcurl on the
 * loop, then report every user back in one pipelined round (ack, retry with backoff, or
 * dead letter). Workers on every loop of every replica do this concurrently; the leases
 * keep them off each other's users. */
#ifndef SVC_SYNC_H
#define SVC_SYNC_H

#include <event2/event.h>

#include "state/state_store.h"
#include "svc/svc_config.h"
#include "svc/svc_curl.h"

struct svc_sync;

/* Creates and starts the worker of one loop. `index` names the loop in logs and
 * rate-limit ids. Returns NULL when out of memory. */
struct svc_sync *svc_sync_new(struct event_base *base, struct state_store *store,
                              struct svc_curl *curl, const struct svc_config *cfg, int index);

/* Stops starting rounds; rounds in flight still finish (or their leases run out). */
void svc_sync_stop(struct svc_sync *s);

/* True when no round is in flight. */
int svc_sync_idle(const struct svc_sync *s);

/* Frees the worker. Call after svc_curl_free (which finishes its transfers) and
 * state_store_free (which fails its Redis calls): both report into rounds this frees. */
void svc_sync_free(struct svc_sync *s);

/* "live", "dry_run" or "unauthorized: <why>", for /readyz. Process-wide. */
const char *svc_sync_status(void);

#endif
