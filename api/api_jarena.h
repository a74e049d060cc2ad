/* api_jarena: a bump arena for jansson, one per parsed document.
 *
 * jansson allocates one block per node, per string and per object table; a 3 kB Intercom
 * notification becomes hundreds of malloc calls and as many frees. While an arena is
 * active on a thread (api_jarena_enter), every jansson allocation made on that thread is
 * carved from it; freeing such a block is a no-op (the arena recognises its own blocks by
 * address), and the whole arena goes at once with api_jarena_free. Allocations on other
 * threads, and on this one while no arena is active, go to malloc/free as before.
 *
 * The contract for users: a json_t allocated from an arena (and everything it holds)
 * must be released before or together with the arena, and must not be decref'd to zero
 * while a different arena is active on the thread. Nothing may keep a reference to such
 * a node beyond the arena's life. api_intercom_parse is the only user: see
 * api_intercom.h for how its documents meet this. */
#ifndef API_JARENA_H
#define API_JARENA_H

#include <stddef.h>

struct api_jarena;

/* Installs the allocation hooks with json_set_alloc_funcs. Call once from main() before
 * starting threads or using jansson (jansson's hook pointers are plain globals). Safe to
 * call again. Until it is called, arenas stay empty and jansson uses malloc/free. */
void api_jarena_install(void);

/* True once api_jarena_install has run. */
int api_jarena_installed(void);

/* A new, empty arena whose first chunk has room for about `hint` bytes (0: a default).
 * NULL when out of memory. */
struct api_jarena *api_jarena_new(size_t hint);

/* Makes `a` (or NULL: none) the thread's active arena; returns the previous one, to be
 * given back to api_jarena_enter when done. */
struct api_jarena *api_jarena_enter(struct api_jarena *a);

/* Releases the arena and every block carved from it. NULL is a no-op. Must not be the
 * active arena of any thread. */
void api_jarena_free(struct api_jarena *a);

/* Bytes handed out so far (for tests and tuning). */
size_t api_jarena_used(const struct api_jarena *a);

#endif
