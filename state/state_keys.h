/* state_keys: Redis key names.
 *
 * Every key carries a partition hash tag, {p<N>} with N = FNV-1a(id) mod
 * STATE_PARTITIONS, where id is the user, ticket or contact the key is about. All keys a
 * script touches for one user (its hash, its event list, and the partition's sync queue)
 * share the user's tag, so the scripts run unchanged on Redis Cluster and the "needs
 * sync" record is written in the same atomic step as the change. The worker walks the
 * STATE_PARTITIONS queues. Changing STATE_PARTITIONS moves every key: it is fixed.
 *
 *   sd:{pN}:u:<user>     hash   the user's tickets and facts (apply.lua documents fields)
 *   sd:{pN}:e:<user>     list   Customer.io events waiting to be sent
 *   sd:{pN}:q            zset   users whose Customer.io attributes need a write
 *   sd:{pN}:w            zset   users whose rule windows end at a known time (re-sync then)
 *   sd:{pN}:r            zset   users waiting out a backoff (ack.lua adds; lease.lua wakes
 *                               them all at once when Customer.io answers after an outage)
 *   sd:{rl}:<dest>       zset   requests sent in the last second (shared rate limit)
 *   sd:{dlq}:<dest>      stream dead letters
 *   sd:{pT}:k:<b>        hash   ticket index, one bucket of many tickets: ticket id -> its
 *                               newest version, owners and expiry (index.lua documents it)
 *   sd:{pC}:c:<b>        hash   contact links, one bucket: contact id -> "<day>|<user>"
 *                               ("?" as user = none yet; day = last use, for pruning)
 *   sd:{pC}:cl:<contact> string a look-up of the contact was queued (expires: look again)
 *   sd:{pN}:rk           string partition N was swept recently (a lock; reconcile.lua)
 *   sd:{pN}:iq           zset   Intercom jobs (forward an event, look up a contact,
 *                               re-check a ticket): job id -> due time; N from the job id
 *   sd:{pN}:ij, :ia      hash   job records, and their attempts
 *   sd:{pN}:cw:<event>   string a Customer.io webhook event id seen (7-day dedupe)
 *   sd:{bf}:state, :lock        backfill progress and its single-runner lock
 */
#ifndef STATE_KEYS_H
#define STATE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define STATE_PARTITIONS 64
/* Tickets and contacts are kept as fields of bucket hashes, STATE_BUCKETS per partition,
 * rather than one key each: a key costs ~80 bytes of overhead before its value, while a
 * field of a small (listpack-encoded) hash costs a few. 64 x 128 buckets stay listpacks
 * (Redis's default hash-max-listpack-entries is 128) up to about a million live tickets;
 * past that a bucket turns into an ordinary hash table: still correct, just larger. */
#define STATE_BUCKETS 128
#define STATE_KEY_MAX 512 /* user ids are <= 256 bytes (the API refuses longer ones) */

/* The partition of an id. Can't fail. */
unsigned state_partition(const char *id, size_t len);

/* Writes the key into buf (size STATE_KEY_MAX) and returns its length. */
size_t state_key_user(char *buf, const char *user);
size_t state_key_events(char *buf, const char *user);
size_t state_key_queue(char *buf, const char *user);
size_t state_key_queue_n(char *buf, unsigned partition);
size_t state_key_window_n(char *buf, unsigned partition);
size_t state_key_retry_n(char *buf, unsigned partition);       /* sd:{pN}:r */
size_t state_key_ticket(char *buf, const char *ticket);
size_t state_key_contact(char *buf, const char *contact);
size_t state_key_contact_lookup(char *buf, const char *contact);
size_t state_key_ticket_bucket_n(char *buf, unsigned partition, unsigned bucket);
size_t state_key_contact_bucket_n(char *buf, unsigned partition, unsigned bucket);
size_t state_key_reconcile_lock_n(char *buf, unsigned partition);

/* Intercom jobs. A job id is a one-letter type, ':', and a routing id (event, contact or
 * ticket id) that picks the partition, so a job can be queued atomically with the
 * contact or ticket keys it is about. */
unsigned state_job_partition(const char *job_id);
size_t state_key_jobs_n(char *buf, unsigned partition);         /* sd:{pN}:iq */
size_t state_key_job_records_n(char *buf, unsigned partition);  /* sd:{pN}:ij */
size_t state_key_job_attempts_n(char *buf, unsigned partition); /* sd:{pN}:ia */
size_t state_key_cio_seen(char *buf, const char *event_id);     /* sd:{pN}:cw:<id> */

#endif
