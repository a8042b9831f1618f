/* alloc.c — malloc wrappers with an optional "fail after N" hook for fault-injection tests. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide by necessity: fault injection must reach allocations deep inside any module.
 * Off (-1) unless a test turns it on. */
static atomic_long alloc_budget = -1;
static atomic_long alloc_injected = 0;

static int alloc_should_fail(void)
{
    long b = atomic_load(&alloc_budget);
    if (b < 0)
        return 0;
    for (;;) {
        if (b == 0) {
            atomic_fetch_add(&alloc_injected, 1);
            return 1;
        }
        if (atomic_compare_exchange_weak(&alloc_budget, &b, b - 1))
            return 0;
        if (b < 0)
            return 0;
    }
}

long ss_alloc_fail_after(long n)
{
    atomic_store(&alloc_budget, n < 0 ? -1 : n);
    return atomic_exchange(&alloc_injected, 0);
}

void *(ss_malloc)(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *(ss_calloc)(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *(ss_realloc)(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void (ss_free)(void *p)
{
    free(p);
}

char *(ss_strndup)(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = ss_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *(ss_strdup)(const char *s)
{
    return ss_strndup(s, strlen(s));
}
