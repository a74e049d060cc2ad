/* state_ulid: ULIDs (https://github.com/ulid/spec) for Customer.io event ids.
 * 48-bit millisecond time + 80 random bits, Crockford base32, 26 chars. An event's id is
 * fixed when the event is recorded and reused on every retry, which is what lets
 * Customer.io drop a duplicate send. */
#ifndef STATE_ULID_H
#define STATE_ULID_H

#include <stdint.h>

#define STATE_ULID_LEN 26

/* Writes a new ULID for time `ms` (unix milliseconds) and a NUL into out. Can't fail
 * (falls back to a weaker random source if getrandom fails). */
void state_ulid_new(char out[STATE_ULID_LEN + 1], uint64_t ms);

/* Current unix time in milliseconds. */
uint64_t state_now_ms(void);

#endif
