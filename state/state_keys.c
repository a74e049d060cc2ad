/* state_keys: Redis key names. See state_keys.h. */
#include "state/state_keys.h"

#include <stdio.h>
#include <string.h>

static uint32_t fnv1a(const char *id, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    return h;
}

unsigned state_partition(const char *id, size_t len) {
    return fnv1a(id, len) % STATE_PARTITIONS;
}

/* The bucket uses the hash bits above the partition's, so the buckets of one partition
 * fill evenly. */
static size_t bucket_n(char *buf, char type, unsigned partition, unsigned bucket) {
    return (size_t)snprintf(buf, STATE_KEY_MAX, "sd:{p%u}:%c:%u", partition, type, bucket);
}

static size_t build_bucket(char *buf, char type, const char *id) {
    uint32_t h = fnv1a(id, strlen(id));
    return bucket_n(buf, type, h % STATE_PARTITIONS, (h / STATE_PARTITIONS) % STATE_BUCKETS);
}

/* sd:{pN}:<type>:<id>, N from the id itself. */
static size_t build(char *buf, const char *type, const char *id) {
    int n = snprintf(buf, STATE_KEY_MAX, "sd:{p%u}:%s:%s", state_partition(id, strlen(id)),
                     type, id);
    return n < STATE_KEY_MAX ? (size_t)n : STATE_KEY_MAX - 1;
}

/* sd:{pN}:<name>, a key shared by partition N. */
static size_t partition_key(char *buf, unsigned partition, const char *name) {
    return (size_t)snprintf(buf, STATE_KEY_MAX, "sd:{p%u}:%s", partition, name);
}

size_t state_key_user(char *buf, const char *user) {
    return build(buf, "u", user);
}

size_t state_key_events(char *buf, const char *user) {
    return build(buf, "e", user);
}

size_t state_key_ticket(char *buf, const char *ticket) {
    return build_bucket(buf, 'k', ticket);
}

size_t state_key_contact(char *buf, const char *contact) {
    return build_bucket(buf, 'c', contact);
}

size_t state_key_ticket_bucket_n(char *buf, unsigned partition, unsigned bucket) {
    return bucket_n(buf, 'k', partition, bucket);
}

size_t state_key_contact_bucket_n(char *buf, unsigned partition, unsigned bucket) {
    return bucket_n(buf, 'c', partition, bucket);
}

size_t state_key_queue_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "q");
}

size_t state_key_queue(char *buf, const char *user) {
    return state_key_queue_n(buf, state_partition(user, strlen(user)));
}

size_t state_key_window_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "w");
}

size_t state_key_retry_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "r");
}

size_t state_key_contact_lookup(char *buf, const char *contact) {
    return build(buf, "cl", contact);
}

size_t state_key_reconcile_lock_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "rk");
}

unsigned state_job_partition(const char *job_id) {
    const char *routing = strlen(job_id) > 2 ? job_id + 2 : job_id;
    return state_partition(routing, strlen(routing));
}

size_t state_key_jobs_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "iq");
}

size_t state_key_job_records_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "ij");
}

size_t state_key_job_attempts_n(char *buf, unsigned partition) {
    return partition_key(buf, partition, "ia");
}

size_t state_key_cio_seen(char *buf, const char *event_id) {
    return build(buf, "cw", event_id);
}
