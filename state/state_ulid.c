/* state_ulid: ULIDs. See state_ulid.h. */
#include "state/state_ulid.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

uint64_t state_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void state_ulid_new(char out[STATE_ULID_LEN + 1], uint64_t ms) {
    unsigned char b[16];
    for (int i = 5; i >= 0; i--) {
        b[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    if (getrandom(b + 6, 10, 0) != 10) {
        for (int i = 6; i < 16; i++)
            b[i] = (unsigned char)(rand() & 0xff);
    }
    /* 128 bits -> 26 base32 digits, most significant first (the first digit holds 3 bits). */
    int bit = -2; /* 26 * 5 = 130 bits: two leading zero bits */
    for (int d = 0; d < STATE_ULID_LEN; d++) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (b[bit / 8] >> (7 - bit % 8)) & 1u;
        }
        out[d] = crockford[v];
    }
    out[STATE_ULID_LEN] = '\0';
}
