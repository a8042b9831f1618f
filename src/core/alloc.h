/* alloc.h — the allocator every shardserve module uses, with a fault-injection hook for tests.
 * ss_malloc & co behave like malloc & co; tests can make the N-th allocation fail (SQLite-style). */
#ifndef SS_ALLOC_H
#define SS_ALLOC_H

#include <stddef.h>

void *ss_malloc(size_t n);
void *ss_calloc(size_t count, size_t size);
void *ss_realloc(void *p, size_t n);
void ss_free(void *p);
/* Returns a malloc'd copy of s (caller frees with ss_free), or NULL. */
char *ss_strdup(const char *s);
char *ss_strndup(const char *s, size_t n);

#ifdef __clang_analyzer__
/* For the static analyzer (scripts/analyze.sh) only: the libc calls, so that it tracks leaks, double frees and
 * use after free through these names, and knows that calloc zeroes. */
#include <stdlib.h>
#include <string.h>
#define ss_malloc(n) malloc(n)
#define ss_calloc(count, size) calloc((count), (size))
#define ss_realloc(p, n) realloc((p), (n))
#define ss_free(p) free(p)
#define ss_strdup(s) strdup(s)
#define ss_strndup(s, n) strndup((s), (n))
#endif

/* Fault injection, for tests only: after `n` more successful allocations, every allocation fails
 * (n < 0 turns injection off). The counter is the one piece of process-wide mutable state, kept
 * atomic so that multi-threaded tests stay well defined. Returns the number of failures injected
 * since the last call. */
long ss_alloc_fail_after(long n);

#endif
