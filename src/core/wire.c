/* wire.c — the control plane's byte order and bounds checks (little-endian, host is x86-64/arm64). */
#include "core/wire.h"

#include <string.h>

#include "core/alloc.h"

void ss_wbuf_put(ss_wbuf *w, const void *p, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n > w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 256;
        while (nc < w->len + n)
            nc *= 2;
        uint8_t *nd = ss_realloc(w->data, nc);
        if (!nd) {
            w->failed = 1;
            return;
        }
        w->data = nd;
        w->cap = nc;
    }
    if (n)
        memcpy(w->data + w->len, p, n);
    w->len += n;
}

void ss_wbuf_u32(ss_wbuf *w, uint32_t v)
{
    ss_wbuf_put(w, &v, 4);
}

void ss_wbuf_u64(ss_wbuf *w, uint64_t v)
{
    ss_wbuf_put(w, &v, 8);
}

void ss_wbuf_f32(ss_wbuf *w, float v)
{
    ss_wbuf_put(w, &v, 4);
}

void ss_wbuf_i32s(ss_wbuf *w, const int32_t *v, int64_t n)
{
    ss_wbuf_u64(w, (uint64_t)n);
    ss_wbuf_put(w, v, (size_t)n * 4);
}

void ss_rbuf_get(ss_rbuf *r, void *out, size_t n)
{
    if (r->failed || n > r->left) {
        r->failed = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
}

uint32_t ss_rbuf_u32(ss_rbuf *r)
{
    uint32_t v;
    ss_rbuf_get(r, &v, 4);
    return v;
}

uint64_t ss_rbuf_u64(ss_rbuf *r)
{
    uint64_t v;
    ss_rbuf_get(r, &v, 8);
    return v;
}

float ss_rbuf_f32(ss_rbuf *r)
{
    float v;
    ss_rbuf_get(r, &v, 4);
    return v;
}

int64_t ss_rbuf_peek_count(const ss_rbuf *r)
{
    if (r->failed || r->left < 8)
        return -1;
    uint64_t n;
    memcpy(&n, r->p, 8);
    return n > (uint64_t)(r->left - 8) / 4 ? -1 : (int64_t)n;
}

int64_t ss_rbuf_i32s(ss_rbuf *r, int32_t *out, int64_t max)
{
    uint64_t n = ss_rbuf_u64(r);
    if (r->failed || n > (uint64_t)max || n * 4 > r->left) {
        r->failed = 1;
        return 0;
    }
    ss_rbuf_get(r, out, (size_t)n * 4);
    return (int64_t)n;
}
