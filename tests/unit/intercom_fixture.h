/* Reading the real Intercom deliveries in tests/fixtures/intercom/ (for unit tests, which
 * run from the repository root). Include after <cmocka.h>. */
#ifndef INTERCOM_FIXTURE_H
#define INTERCOM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#define FIXDIR "tests/fixtures/intercom/"

/* The whole file, NUL-terminated (free it); fails the test when it cannot be read. */
static char *read_fixture(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof(path), FIXDIR "%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s (run from the repository root)", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

#endif
