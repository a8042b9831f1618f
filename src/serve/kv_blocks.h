/* kv_blocks.h — the paged KV-cache block manager of the scheduler: a fixed pool of blocks, per-sequence
 * block tables, and a prefix cache (full blocks keyed by a hash chain, reference-counted, LRU-evicted).
 * It only does bookkeeping on the leader; the ranks hold the memory. Not thread-safe (scheduler thread). */
#ifndef SS_KV_BLOCKS_H
#define SS_KV_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ss_kv_blocks ss_kv_blocks;

/* One sequence's block table. Owned by the caller (embedded in its request), filled by the functions
 * below; zero-initialize it (or call ss_kv_seq_init) before first use, release with ss_kv_seq_free. */
typedef struct ss_kv_seq {
    int32_t *blocks; /* [n_blocks] physical block ids covering positions 0 .. n_blocks*block_size-1 */
    int32_t n_blocks;
    int32_t cap;      /* capacity of blocks and hashes */
    uint64_t *hashes; /* [n_hashed] chain hash of each full block whose tokens are known and computed */
    int32_t n_hashed;
} ss_kv_seq;

typedef struct ss_kv_stats {
    int64_t total;        /* blocks in the pool */
    int64_t used;         /* blocks referenced by at least one sequence */
    int64_t cached;       /* unreferenced blocks still holding a cached prefix (evictable) */
    int64_t evictions;    /* cached blocks reused for something else */
    int64_t hit_tokens;   /* prompt tokens served from the cache (ss_kv_seq_match_prefix) */
    int64_t query_tokens; /* prompt tokens looked up */
} ss_kv_stats;

/* Creates a manager over n_blocks blocks of block_size tokens (caller destroys). With
 * enable_prefix_cache = 0 nothing is ever hashed, freed blocks go straight back to the free list. */
ss_status ss_kv_blocks_create(int32_t n_blocks, int32_t block_size, int enable_prefix_cache, ss_kv_blocks **out,
                              ss_err *err);
void ss_kv_blocks_destroy(ss_kv_blocks *kv);

int32_t ss_kv_block_size(const ss_kv_blocks *kv);
/* Blocks a sequence could still get: free ones plus unreferenced cached ones. */
int32_t ss_kv_num_available(const ss_kv_blocks *kv);
void ss_kv_stats_get(const ss_kv_blocks *kv, ss_kv_stats *out);

/* Number of blocks needed to hold n_tokens positions. */
int32_t ss_kv_blocks_for(const ss_kv_blocks *kv, int64_t n_tokens);

void ss_kv_seq_init(ss_kv_seq *seq);

/* For a sequence without blocks: takes the longest chain of cached full blocks that matches the start
 * of tokens[0..n_tokens) (never the block holding the last token, whose logits must be computed) and
 * returns in *n_cached how many tokens they cover. Counts query/hit tokens in the stats. */
ss_status ss_kv_seq_match_prefix(ss_kv_blocks *kv, ss_kv_seq *seq, const int32_t *tokens, int32_t n_tokens,
                                 int32_t *n_cached, ss_err *err);

/* Grows the table so that it covers n_tokens positions. All or nothing: SS_ERR_CAPACITY (and no change)
 * when fewer than the missing blocks are available. Evicts least-recently-used cached blocks first
 * when the free list is empty. */
ss_status ss_kv_seq_reserve(ss_kv_blocks *kv, ss_kv_seq *seq, int64_t n_tokens, ss_err *err);

/* Publishes the sequence's full blocks whose KV is now computed (tokens[0..n_computed) are in the cache)
 * to the prefix cache. tokens must hold at least n_computed ids; it is read, not kept. */
void ss_kv_seq_commit(ss_kv_blocks *kv, ss_kv_seq *seq, const int32_t *tokens, int64_t n_computed);

/* Releases every block of the sequence (cached ones stay cached until evicted) and empties its table;
 * the table's arrays are freed too. Safe on an empty or zeroed sequence. */
void ss_kv_seq_free(ss_kv_blocks *kv, ss_kv_seq *seq);
/* Gives back seq's blocks past those that n_tokens positions need (blocks reserved for tokens that did not come:
 * refused draft tokens). Only blocks not published to the prefix cache are past n_computed, so nothing cached goes. */
void ss_kv_seq_shrink(ss_kv_blocks *kv, ss_kv_seq *seq, int64_t n_tokens);

#endif
