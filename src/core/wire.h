/* wire.h — bounds-checked little-endian serialization for the control plane (plans, outputs,
 * handshakes): a growable writer and a reader that fails instead of running past its buffer. */
#ifndef SS_WIRE_H
#define SS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ss_wbuf {
    uint8_t *data; /* ss_malloc'd; the caller takes it (or frees with ss_free) */
    size_t len, cap;
    int failed;    /* an allocation failed: every later put is a no-op */
} ss_wbuf;

void ss_wbuf_put(ss_wbuf *w, const void *p, size_t n);
void ss_wbuf_u32(ss_wbuf *w, uint32_t v);
void ss_wbuf_u64(ss_wbuf *w, uint64_t v);
void ss_wbuf_f32(ss_wbuf *w, float v);
/* Length-prefixed array of int32. */
void ss_wbuf_i32s(ss_wbuf *w, const int32_t *v, int64_t n);

typedef struct ss_rbuf {
    const uint8_t *p;
    size_t left;
    int failed; /* a read ran past the end: every later get returns 0 */
} ss_rbuf;

void ss_rbuf_get(ss_rbuf *r, void *out, size_t n);
uint32_t ss_rbuf_u32(ss_rbuf *r);
uint64_t ss_rbuf_u64(ss_rbuf *r);
float ss_rbuf_f32(ss_rbuf *r);
/* Reads a length-prefixed int32 array of at most max elements into storage the caller sized;
 * returns the count (0 and failed on overflow). */
int64_t ss_rbuf_i32s(ss_rbuf *r, int32_t *out, int64_t max);
/* Peeks the count of the next i32 array without consuming it. */
int64_t ss_rbuf_peek_count(const ss_rbuf *r);

#endif
