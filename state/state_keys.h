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
 *   sd:{rl}:<dest>       zset   requests sent in the last second (shared rate limit)
 *   sd:{dlq}:<dest>      stream dead letters
 *   sd:{pT}:k:<ticket>   hash   owners of a ticket
 *   sd:{pC}:c:<contact>  string the user a contact id belongs to ("?" = none yet)
 */
#ifndef STATE_KEYS_H
#define STATE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define STATE_PARTITIONS 64
#define STATE_KEY_MAX 512 /* user ids are <= 256 bytes (the API refuses longer ones) */

/* The partition of an id. Can't fail. */
unsigned state_partition(const char *id, size_t len);

/* Writes the key into buf (size STATE_KEY_MAX) and returns its length. */
size_t state_key_user(char *buf, const char *user);
size_t state_key_events(char *buf, const char *user);
size_t state_key_queue(char *buf, const char *user);
size_t state_key_queue_n(char *buf, unsigned partition);
size_t state_key_window_n(char *buf, unsigned partition);
size_t state_key_ticket(char *buf, const char *ticket);
size_t state_key_contact(char *buf, const char *contact);

#endif
