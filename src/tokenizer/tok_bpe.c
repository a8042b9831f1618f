/* tok_bpe.c — the BPE model: turns one pre-token into ids. Lowest-rank pair first, leftmost among
 * equals (what the reference's priority queue does): a linear scan for short words, a heap for long. */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tok_internal.h"

#define TOK_BPE_SMALL 64     /* words up to this many symbols use the quadratic scan */
#define TOK_BPE_STACK 256    /* symbols held on the stack before going to the heap */

/* Initial symbols of a word: one per byte (byte-level) or per character, with byte fallback and
 * unknown-token handling. */
static ss_status bpe_initial(const ss_tokenizer *tok, const char *p, size_t len, ss_tok_ids *syms)
{
    const unsigned char *u = (const unsigned char *)p;
    int prev_unk = 0;
    size_t i = 0;
    while (i < len) {
        int32_t id;
        size_t clen = 1;
        if (tok->byte_level) {
            id = tok->byte_id[u[i]];
        } else if (u[i] < 0x80) {
            id = tok->ascii_id[u[i]];
        } else {
            clen = ss_tok_utf8_len(u + i, len - i);
            if (!clen)
                clen = 1; /* cannot happen on validated input; stay safe */
            id = ss_tok_strmap_get(&tok->enc_map, p + i, clen);
        }
        if (id < 0 && tok->byte_fallback) {
            int all = 1;
            for (size_t k = 0; k < clen; k++)
                all &= tok->byte_fb_id[u[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < clen; k++)
                    SS_CHECK(ss_tok_ids_push(syms, tok->byte_fb_id[u[i + k]]));
                prev_unk = 0;
                i += clen;
                continue;
            }
        }
        if (id >= 0) {
            SS_CHECK(ss_tok_ids_push(syms, id));
            prev_unk = 0;
        } else if (tok->unk_id >= 0) {
            if (!(tok->fuse_unk && prev_unk))
                SS_CHECK(ss_tok_ids_push(syms, tok->unk_id));
            prev_unk = 1;
        } /* else: dropped, as the reference does without an unknown token */
        i += clen;
    }
    return SS_OK;
}

static uint32_t bpe_rank(const ss_tokenizer *tok, int32_t a, int32_t b, int32_t *new_id)
{
    const ss_tok_merge_slot *s = ss_tok_mergemap_get(&tok->merges, a, b);
    *new_id = -1;
    if (!s)
        return UINT32_MAX;
    *new_id = s->new_id;
    return s->rank;
}

/* Quadratic merge loop over a compact array; fine for short words. Returns the new count. */
static size_t bpe_merge_small(const ss_tokenizer *tok, int32_t *ids, size_t n)
{
    uint32_t ranks[TOK_BPE_SMALL];
    int32_t news[TOK_BPE_SMALL];
    for (size_t i = 0; i + 1 < n; i++)
        ranks[i] = bpe_rank(tok, ids[i], ids[i + 1], &news[i]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (ranks[i] < ranks[best])
                best = i;
        if (ranks[best] == UINT32_MAX)
            break;
        ids[best] = news[best];
        memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof *ids);
        if (best + 2 < n) {
            memmove(ranks + best + 1, ranks + best + 2, (n - best - 3) * sizeof *ranks);
            memmove(news + best + 1, news + best + 2, (n - best - 3) * sizeof *news);
        }
        n--;
        if (best > 0)
            ranks[best - 1] = bpe_rank(tok, ids[best - 1], ids[best], &news[best - 1]);
        if (best + 1 < n)
            ranks[best] = bpe_rank(tok, ids[best], ids[best + 1], &news[best]);
    }
    return n;
}

typedef struct bpe_entry {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} bpe_entry;

static int bpe_less(const bpe_entry *a, const bpe_entry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void bpe_heap_push(bpe_entry *h, size_t *n, bpe_entry e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_less(&e, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static bpe_entry bpe_heap_pop(bpe_entry *h, size_t *n)
{
    bpe_entry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && bpe_less(&h[c + 1], &h[c]))
            c++;
        if (!bpe_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Heap merge loop over a linked list; O(n log n). Returns the new count (ids compacted). */
static ss_status bpe_merge_heap(const ss_tokenizer *tok, int32_t *ids, size_t n, size_t *n_out)
{
    int64_t *prv = ss_malloc(n * sizeof *prv);
    int64_t *nxt = ss_malloc(n * sizeof *nxt);
    bpe_entry *heap = ss_malloc(3 * n * sizeof *heap);
    if (!prv || !nxt || !heap) {
        ss_free(prv);
        ss_free(nxt);
        ss_free(heap);
        return SS_ERR_NOMEM;
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prv[i] = (int64_t)i - 1;
        nxt[i] = i + 1 < n ? (int64_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t nid = -1;
        uint32_t r = bpe_rank(tok, ids[i], ids[i + 1], &nid);
        if (r != UINT32_MAX)
            bpe_heap_push(heap, &hn, (bpe_entry){r, (uint32_t)i, nid});
    }
    while (hn) {
        bpe_entry top = bpe_heap_pop(heap, &hn);
        size_t pos = top.pos;
        if (ids[pos] < 0 || nxt[pos] < 0)
            continue; /* removed, or nothing to its right any more */
        size_t right = (size_t)nxt[pos];
        int32_t nid = -1;
        if (bpe_rank(tok, ids[pos], ids[right], &nid) != top.rank || nid != top.new_id)
            continue; /* stale entry */
        ids[pos] = nid;
        ids[right] = -1;
        nxt[pos] = nxt[right];
        if (nxt[right] >= 0)
            prv[nxt[right]] = (int64_t)pos;
        if (prv[pos] >= 0) {
            size_t l = (size_t)prv[pos];
            uint32_t r = bpe_rank(tok, ids[l], ids[pos], &nid);
            if (r != UINT32_MAX)
                bpe_heap_push(heap, &hn, (bpe_entry){r, (uint32_t)l, nid});
        }
        if (nxt[pos] >= 0) {
            uint32_t r = bpe_rank(tok, ids[pos], ids[nxt[pos]], &nid);
            if (r != UINT32_MAX)
                bpe_heap_push(heap, &hn, (bpe_entry){r, (uint32_t)pos, nid});
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0)
            ids[k++] = ids[i];
    *n_out = k;
    ss_free(prv);
    ss_free(nxt);
    ss_free(heap);
    return SS_OK;
}

ss_status ss_tok_bpe_word(const ss_tokenizer *tok, const char *p, size_t len, int force_heap, ss_tok_ids *out,
                          ss_err *err)
{
    if (!len)
        return SS_OK;
    if (tok->ignore_merges) {
        int32_t id = ss_tok_strmap_get(&tok->enc_map, p, len);
        if (id >= 0) {
            if (ss_tok_ids_push(out, id) != SS_OK)
                return ss_err_set(err, SS_ERR_NOMEM, "tokenizer: out of memory");
            return SS_OK;
        }
    }
    if (len > UINT32_MAX / 4)
        return ss_err_set(err, SS_ERR_CAPACITY, "tokenizer: pre-token of %zu bytes is too long", len);
    int32_t stack[TOK_BPE_STACK];
    ss_tok_ids syms = {0};
    ss_status st = SS_OK;
    if (len <= TOK_BPE_STACK) {
        syms.v = stack; /* never grows: at most one symbol per byte */
        syms.cap = TOK_BPE_STACK;
    }
    st = bpe_initial(tok, p, len, &syms);
    if (st != SS_OK)
        goto out;
    size_t n = syms.n;
    if (n > 1) {
        if (n <= TOK_BPE_SMALL && !force_heap)
            n = bpe_merge_small(tok, syms.v, n);
        else if ((st = bpe_merge_heap(tok, syms.v, n, &n)) != SS_OK)
            goto out;
    }
    if (out->cap - out->n < n) {
        size_t cap = out->cap ? out->cap : 64;
        while (cap - out->n < n)
            cap *= 2;
        int32_t *v = ss_realloc(out->v, cap * sizeof *v);
        if (!v) {
            st = SS_ERR_NOMEM;
            goto out;
        }
        out->v = v;
        out->cap = cap;
    }
    if (n > 0) { /* none when every character was dropped (no unk, no byte fallback): out->v may still be NULL */
        memcpy(out->v + out->n, syms.v, n * sizeof *syms.v);
        out->n += n;
    }
out:
    if (syms.v != stack)
        ss_free(syms.v);
    if (st != SS_OK)
        return ss_err_set(err, st, "tokenizer: %s while encoding", ss_status_str(st));
    return SS_OK;
}
