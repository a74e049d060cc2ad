/* api_jarena: a bump arena for jansson. See api_jarena.h. */
#include "api/api_jarena.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ALIGN 16u
#define DEFAULT_CHUNK 8192u
#define MAX_FIRST_CHUNK (1u << 20)

/* A chunk: this header, then `size` bytes of blocks. */
struct chunk {
    struct chunk *next;
    uintptr_t lo, hi;            /* its data, [lo, hi), ALIGN-aligned */
};

struct api_jarena {
    struct chunk *head;          /* newest first: the one `cur` points into */
    char *cur, *end;
    size_t used;
    size_t next_size;
    struct chunk first;          /* the first chunk's header; its data follows */
};

static uintptr_t align_up(const void *p) {
    return ((uintptr_t)p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
}

static _Thread_local struct api_jarena *active;
static atomic_int installed;

static struct chunk *chunk_new(size_t size) {
    struct chunk *c = malloc(sizeof(*c) + ALIGN + size);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->lo = align_up(c + 1);
    c->hi = c->lo + size;
    POISON((void *)c->lo, size);
    return c;
}

static int grow(struct api_jarena *a, size_t n) {
    size_t size = a->next_size > n ? a->next_size : n;
    struct chunk *c = chunk_new(size);
    if (c == NULL)
        return -1;
    c->next = a->head;
    a->head = c;
    a->cur = (char *)c->lo;
    a->end = (char *)c->hi;
    if (a->next_size < (SIZE_MAX >> 2))
        a->next_size *= 2;
    return 0;
}

static void *hook_malloc(size_t size) {
    struct api_jarena *a = active;
    if (a == NULL)
        return malloc(size);
    if (size > SIZE_MAX / 4)
        return NULL;
    size_t n = size ? (size + ALIGN - 1) & ~(size_t)(ALIGN - 1) : ALIGN;
    if ((size_t)(a->end - a->cur) < n && grow(a, n) < 0)
        return NULL;
    char *p = a->cur;
    a->cur += n;
    a->used += n;
    UNPOISON(p, size);
    return p;
}

/* Blocks of the active arena are released with it; anything else came from malloc. */
static void hook_free(void *p) {
    struct api_jarena *a = active;
    if (a != NULL) {
        uintptr_t u = (uintptr_t)p;
        for (const struct chunk *c = a->head; c != NULL; c = c->next) {
            if (u >= c->lo && u < c->hi)
                return;
        }
    }
    free(p);
}

void api_jarena_install(void) {
    if (atomic_exchange(&installed, 1) == 0)
        json_set_alloc_funcs(hook_malloc, hook_free);
}

int api_jarena_installed(void) {
    return atomic_load_explicit(&installed, memory_order_relaxed);
}

struct api_jarena *api_jarena_new(size_t hint) {
    size_t first = hint ? (hint + ALIGN - 1) & ~(size_t)(ALIGN - 1) : DEFAULT_CHUNK;
    if (first > MAX_FIRST_CHUNK)
        first = MAX_FIRST_CHUNK;
    /* One malloc: the arena, then the first chunk's blocks. */
    struct api_jarena *a = malloc(sizeof(*a) + ALIGN + first);
    if (a == NULL)
        return NULL;
    a->first.next = NULL;
    a->first.lo = align_up(a + 1);
    a->first.hi = a->first.lo + first;
    POISON((void *)a->first.lo, first);
    a->head = &a->first;
    a->cur = (char *)a->first.lo;
    a->end = (char *)a->first.hi;
    a->used = 0;
    a->next_size = first; /* the second chunk, if any, is as big as the first */
    return a;
}

struct api_jarena *api_jarena_enter(struct api_jarena *a) {
    struct api_jarena *prev = active;
    active = a;
    return prev;
}

void api_jarena_free(struct api_jarena *a) {
    if (a == NULL)
        return;
    for (struct chunk *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        UNPOISON((void *)c->lo, c->hi - c->lo);
        if (c != &a->first)
            free(c);
    }
    free(a);
}

size_t api_jarena_used(const struct api_jarena *a) {
    return a ? a->used : 0;
}
