/* kv_blocks.c — paged KV block manager: free list, per-sequence tables, and the prefix cache
 * (hash chain over full blocks in an open-addressing map, reference counts, LRU list of idle blocks). */
#include "serve/kv_blocks.h"

#include <string.h>

#include "core/alloc.h"

#define KV_NONE (-1)
#define KV_ROOT_HASH UINT64_C(0x9e3779b97f4a7c15)

typedef struct kv_block {
    int32_t ref;      /* sequences holding it */
    int32_t lru_prev; /* links in the LRU list while ref == 0 and hashed */
    int32_t lru_next;
    int hashed;      /* registered in the map (its tokens and parent are valid) */
    uint64_t hash;   /* chain hash: parent hash + this block's tokens */
    uint64_t parent; /* hash of the previous block of the chain (KV_ROOT_HASH for the first) */
} kv_block;

struct ss_kv_blocks {
    int32_t n_blocks;
    int32_t block_size;
    int prefix_cache;
    kv_block *blk;       /* [n_blocks] */
    int32_t *tokens;     /* [n_blocks, block_size] token ids of hashed blocks (prefix cache only) */
    int32_t *free_stack; /* [n_blocks] unreferenced, unhashed blocks */
    int32_t n_free;
    int32_t lru_head; /* least recently released cached block (evicted first) */
    int32_t lru_tail;
    int32_t n_cached;
    int32_t *map; /* [map_cap] block ids or KV_NONE, linear probing on hash */
    uint32_t map_mask;
    int64_t evictions, hit_tokens, query_tokens;
};

static uint64_t kv_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t kv_hash_block(uint64_t parent, const int32_t *tok, int32_t n)
{
    uint64_t h = kv_mix(parent + KV_ROOT_HASH);
    for (int32_t i = 0; i < n; i++)
        h = kv_mix(h ^ ((uint64_t)(uint32_t)tok[i] + (uint64_t)i * KV_ROOT_HASH));
    return h;
}

ss_status ss_kv_blocks_create(int32_t n_blocks, int32_t block_size, int enable_prefix_cache, ss_kv_blocks **out,
                              ss_err *err)
{
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0 || n_blocks > (INT32_MAX / 4) || block_size > 65536)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "kv blocks: bad geometry %d blocks of %d tokens", (int)n_blocks,
                          (int)block_size);
    ss_kv_blocks *kv = ss_calloc(1, sizeof(*kv));
    if (!kv)
        return ss_err_set(err, SS_ERR_NOMEM, "kv blocks: out of memory");
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->prefix_cache = enable_prefix_cache != 0;
    kv->lru_head = kv->lru_tail = KV_NONE;
    kv->blk = ss_calloc((size_t)n_blocks, sizeof(kv_block));
    kv->free_stack = ss_malloc((size_t)n_blocks * sizeof(int32_t));
    uint32_t map_cap = 16;
    while (map_cap < (uint32_t)n_blocks * 2u)
        map_cap <<= 1;
    if (kv->prefix_cache) {
        kv->tokens = ss_malloc((size_t)n_blocks * (size_t)block_size * sizeof(int32_t));
        kv->map = ss_malloc((size_t)map_cap * sizeof(int32_t));
    }
    if (!kv->blk || !kv->free_stack || (kv->prefix_cache && (!kv->tokens || !kv->map))) {
        ss_kv_blocks_destroy(kv);
        return ss_err_set(err, SS_ERR_NOMEM, "kv blocks: out of memory for %d blocks", (int)n_blocks);
    }
    kv->map_mask = map_cap - 1;
    if (kv->map)
        for (uint32_t i = 0; i < map_cap; i++)
            kv->map[i] = KV_NONE;
    /* Pop order: block 0 first. */
    for (int32_t i = 0; i < n_blocks; i++) {
        kv->blk[i].lru_prev = kv->blk[i].lru_next = KV_NONE;
        kv->free_stack[i] = n_blocks - 1 - i;
    }
    kv->n_free = n_blocks;
    *out = kv;
    return SS_OK;
}

void ss_kv_blocks_destroy(ss_kv_blocks *kv)
{
    if (!kv)
        return;
    ss_free(kv->blk);
    ss_free(kv->tokens);
    ss_free(kv->free_stack);
    ss_free(kv->map);
    ss_free(kv);
}

int32_t ss_kv_block_size(const ss_kv_blocks *kv)
{
    return kv->block_size;
}

int32_t ss_kv_num_available(const ss_kv_blocks *kv)
{
    return kv->n_free + kv->n_cached;
}

int32_t ss_kv_blocks_for(const ss_kv_blocks *kv, int64_t n_tokens)
{
    if (n_tokens <= 0)
        return 0;
    int64_t n = (n_tokens + kv->block_size - 1) / kv->block_size;
    return n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

void ss_kv_stats_get(const ss_kv_blocks *kv, ss_kv_stats *out)
{
    out->total = kv->n_blocks;
    out->used = (int64_t)kv->n_blocks - kv->n_free - kv->n_cached;
    out->cached = kv->n_cached;
    out->evictions = kv->evictions;
    out->hit_tokens = kv->hit_tokens;
    out->query_tokens = kv->query_tokens;
}

/* ---- LRU list of unreferenced cached blocks ---- */

static void kv_lru_remove(ss_kv_blocks *kv, int32_t b)
{
    kv_block *k = &kv->blk[b];
    if (k->lru_prev != KV_NONE)
        kv->blk[k->lru_prev].lru_next = k->lru_next;
    else
        kv->lru_head = k->lru_next;
    if (k->lru_next != KV_NONE)
        kv->blk[k->lru_next].lru_prev = k->lru_prev;
    else
        kv->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = KV_NONE;
    kv->n_cached--;
}

static void kv_lru_push(ss_kv_blocks *kv, int32_t b)
{
    kv_block *k = &kv->blk[b];
    k->lru_prev = kv->lru_tail;
    k->lru_next = KV_NONE;
    if (kv->lru_tail != KV_NONE)
        kv->blk[kv->lru_tail].lru_next = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

/* ---- hash map: block id by chain hash (linear probing, backward-shift deletion) ---- */

static int32_t kv_map_find(const ss_kv_blocks *kv, uint64_t hash, uint64_t parent, const int32_t *tok)
{
    for (uint32_t i = (uint32_t)hash & kv->map_mask;; i = (i + 1) & kv->map_mask) {
        int32_t b = kv->map[i];
        if (b == KV_NONE)
            return KV_NONE;
        const kv_block *k = &kv->blk[b];
        if (k->hash == hash && k->parent == parent &&
            memcmp(kv->tokens + (size_t)b * (size_t)kv->block_size, tok, (size_t)kv->block_size * sizeof(int32_t)) == 0)
            return b;
    }
}

static void kv_map_insert(ss_kv_blocks *kv, int32_t b)
{
    uint32_t i = (uint32_t)kv->blk[b].hash & kv->map_mask;
    while (kv->map[i] != KV_NONE)
        i = (i + 1) & kv->map_mask;
    kv->map[i] = b;
}

static void kv_map_remove(ss_kv_blocks *kv, int32_t b)
{
    uint32_t i = (uint32_t)kv->blk[b].hash & kv->map_mask;
    while (kv->map[i] != b)
        i = (i + 1) & kv->map_mask; /* b is in the map: the probe ends */
    kv->map[i] = KV_NONE;
    /* Shift later members of the cluster back so every probe chain stays unbroken. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & kv->map_mask; kv->map[j] != KV_NONE; j = (j + 1) & kv->map_mask) {
        uint32_t home = (uint32_t)kv->blk[kv->map[j]].hash & kv->map_mask;
        /* Move j to the hole unless its home lies cyclically in (hole, j]. */
        int stays = (hole <= j) ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            kv->map[hole] = kv->map[j];
            kv->map[j] = KV_NONE;
            hole = j;
        }
    }
}

/* ---- block lifetime ---- */

/* Takes a block for exclusive use (ref 1): the free list first, else the least recently used cached one. */
static int32_t kv_take(ss_kv_blocks *kv)
{
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head != KV_NONE) {
        b = kv->lru_head;
        kv_lru_remove(kv, b);
        kv_map_remove(kv, b);
        kv->blk[b].hashed = 0;
        kv->evictions++;
    } else {
        return KV_NONE;
    }
    kv->blk[b].ref = 1;
    return b;
}

static void kv_release(ss_kv_blocks *kv, int32_t b)
{
    kv_block *k = &kv->blk[b];
    if (--k->ref > 0)
        return;
    if (k->hashed)
        kv_lru_push(kv, b);
    else
        kv->free_stack[kv->n_free++] = b;
}

static ss_status kv_seq_grow(ss_kv_seq *seq, int32_t need, ss_err *err)
{
    if (need <= seq->cap)
        return SS_OK;
    int32_t cap = seq->cap ? seq->cap : 8;
    while (cap < need)
        cap = cap > INT32_MAX / 2 ? need : cap * 2;
    int32_t *blocks = ss_realloc(seq->blocks, (size_t)cap * sizeof(int32_t));
    if (!blocks)
        return ss_err_set(err, SS_ERR_NOMEM, "kv blocks: out of memory for a block table of %d", (int)cap);
    seq->blocks = blocks;
    uint64_t *hashes = ss_realloc(seq->hashes, (size_t)cap * sizeof(uint64_t));
    if (!hashes)
        return ss_err_set(err, SS_ERR_NOMEM, "kv blocks: out of memory for a block table of %d", (int)cap);
    seq->hashes = hashes;
    seq->cap = cap;
    return SS_OK;
}

void ss_kv_seq_init(ss_kv_seq *seq)
{
    memset(seq, 0, sizeof(*seq));
}

ss_status ss_kv_seq_match_prefix(ss_kv_blocks *kv, ss_kv_seq *seq, const int32_t *tokens, int32_t n_tokens,
                                 int32_t *n_cached, ss_err *err)
{
    *n_cached = 0;
    if (seq->n_blocks != 0)
        return ss_err_set(err, SS_ERR_INTERNAL, "kv blocks: prefix match on a sequence that has blocks");
    if (!kv->prefix_cache || n_tokens <= 0)
        return SS_OK;
    kv->query_tokens += n_tokens;
    int32_t max_full = (n_tokens - 1) / kv->block_size; /* the last token's block is always computed */
    if (max_full == 0)
        return SS_OK;
    SS_CHECK(kv_seq_grow(seq, max_full, err));
    uint64_t parent = KV_ROOT_HASH;
    int32_t i = 0;
    for (; i < max_full; i++) {
        const int32_t *tok = tokens + (size_t)i * (size_t)kv->block_size;
        uint64_t h = kv_hash_block(parent, tok, kv->block_size);
        int32_t b = kv_map_find(kv, h, parent, tok);
        if (b == KV_NONE)
            break;
        if (kv->blk[b].ref == 0)
            kv_lru_remove(kv, b);
        kv->blk[b].ref++;
        seq->blocks[i] = b;
        seq->hashes[i] = h;
        parent = h;
    }
    seq->n_blocks = seq->n_hashed = i;
    *n_cached = i * kv->block_size;
    kv->hit_tokens += *n_cached;
    return SS_OK;
}

ss_status ss_kv_seq_reserve(ss_kv_blocks *kv, ss_kv_seq *seq, int64_t n_tokens, ss_err *err)
{
    int32_t want = ss_kv_blocks_for(kv, n_tokens);
    if (want <= seq->n_blocks)
        return SS_OK;
    int32_t need = want - seq->n_blocks;
    if (need > ss_kv_num_available(kv))
        return ss_err_set(err, SS_ERR_CAPACITY, "kv blocks: %d more blocks needed, %d available", (int)need,
                          (int)ss_kv_num_available(kv));
    SS_CHECK(kv_seq_grow(seq, want, err));
    while (seq->n_blocks < want)
        seq->blocks[seq->n_blocks++] = kv_take(kv); /* cannot fail: counted above */
    return SS_OK;
}

void ss_kv_seq_commit(ss_kv_blocks *kv, ss_kv_seq *seq, const int32_t *tokens, int64_t n_computed)
{
    if (!kv->prefix_cache)
        return;
    int64_t full = n_computed / kv->block_size;
    if (full > seq->n_blocks)
        full = seq->n_blocks;
    for (int32_t i = seq->n_hashed; i < full; i++) {
        const int32_t *tok = tokens + (size_t)i * (size_t)kv->block_size;
        uint64_t parent = i > 0 ? seq->hashes[i - 1] : KV_ROOT_HASH;
        uint64_t h = kv_hash_block(parent, tok, kv->block_size);
        seq->hashes[i] = h;
        seq->n_hashed = i + 1;
        int32_t b = seq->blocks[i];
        if (kv->blk[b].hashed || kv_map_find(kv, h, parent, tok) != KV_NONE)
            continue; /* already published, or the same prefix is cached in another block */
        kv_block *k = &kv->blk[b];
        k->hash = h;
        k->parent = parent;
        k->hashed = 1;
        memcpy(kv->tokens + (size_t)b * (size_t)kv->block_size, tok, (size_t)kv->block_size * sizeof(int32_t));
        kv_map_insert(kv, b);
    }
}

void ss_kv_seq_shrink(ss_kv_blocks *kv, ss_kv_seq *seq, int64_t n_tokens)
{
    int32_t keep = ss_kv_blocks_for(kv, n_tokens);
    keep = keep > seq->n_hashed ? keep : seq->n_hashed;
    while (seq->n_blocks > keep)
        kv_release(kv, seq->blocks[--seq->n_blocks]);
}

void ss_kv_seq_free(ss_kv_blocks *kv, ss_kv_seq *seq)
{
    /* Last block first: the chain's head ends up most recently used, so leaves are evicted before roots. */
    for (int32_t i = seq->n_blocks - 1; i >= 0; i--)
        kv_release(kv, seq->blocks[i]);
    ss_free(seq->blocks);
    ss_free(seq->hashes);
    memset(seq, 0, sizeof(*seq));
}
