/* svc_server: the event loops. Each loop (SUPPRESS_THREADS of them) owns an evhttp
 * bound to the shared port with SO_REUSEPORT, its own Redis connection and, later, its
 * own outbound clients; loops share nothing mutable except the metrics atomics, so no
 * request ever waits on a lock. */
#ifndef SVC_SERVER_H
#define SVC_SERVER_H

#include "svc/svc_config.h"

struct svc_server;

/* Binds every loop's listening socket and connects to Redis (asynchronously).
 * Returns a new server owned by the caller (free with svc_server_free), or NULL with a
 * one-line reason in err (port in use, out of memory). */
struct svc_server *svc_server_new(const struct svc_config *cfg, char *err, size_t errlen);

/* Runs the loops until SIGTERM or SIGINT, then drains: stops accepting, lets requests
 * waiting on Redis finish (at most drain_ms), and returns 0. */
int svc_server_run(struct svc_server *srv, int drain_ms);

/* `suppressd backfill`: runs one backfill (svc_backfill.h) on a loop of its own and
 * returns the exit status: 0 done, 1 failed, 130 interrupted (progress is kept). */
int svc_server_backfill(const struct svc_config *cfg, int restart);

/* Frees the server. svc_server_free(NULL) is a no-op. */
void svc_server_free(struct svc_server *srv);

#endif
