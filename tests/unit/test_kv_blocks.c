/* test_kv_blocks.c — the paged KV block manager: allocation, exhaustion, reference counts, prefix reuse,
 * LRU eviction of cached blocks, the never-reuse-the-last-token's-block rule, and shrinking a table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "serve/kv_blocks.h"

static ss_kv_blocks *make(int32_t n, int32_t bs, int cache)
{
    ss_kv_blocks *kv = NULL;
    ss_err err;
    assert_int_equal(ss_kv_blocks_create(n, bs, cache, &kv, &err), SS_OK);
    return kv;
}

static int64_t used(const ss_kv_blocks *kv)
{
    ss_kv_stats st;
    ss_kv_stats_get(kv, &st);
    return st.used;
}

static void fill_tokens(int32_t *t, int32_t n, int32_t base)
{
    for (int32_t i = 0; i < n; i++)
        t[i] = base + i * 7 % 50;
}

static void test_geometry_errors(void **state)
{
    (void)state;
    ss_kv_blocks *kv = NULL;
    ss_err err;
    assert_int_equal(ss_kv_blocks_create(0, 16, 1, &kv, &err), SS_ERR_INVALID_ARG);
    assert_null(kv);
    assert_int_equal(ss_kv_blocks_create(8, 0, 1, &kv, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "0 tokens"));
}

static void test_alloc_free_exhaustion(void **state)
{
    (void)state;
    ss_kv_blocks *kv = make(8, 4, 0);
    ss_err err;
    ss_kv_seq a, b;
    ss_kv_seq_init(&a);
    ss_kv_seq_init(&b);
    assert_int_equal(ss_kv_blocks_for(kv, 0), 0);
    assert_int_equal(ss_kv_blocks_for(kv, 1), 1);
    assert_int_equal(ss_kv_blocks_for(kv, 4), 1);
    assert_int_equal(ss_kv_blocks_for(kv, 5), 2);

    assert_int_equal(ss_kv_seq_reserve(kv, &a, 9, &err), SS_OK); /* 3 blocks */
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(used(kv), 3);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 12, &err), SS_OK); /* still 3 */
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 20, &err), SS_OK); /* 5 blocks: pool full */
    assert_int_equal(ss_kv_num_available(kv), 0);
    /* distinct physical blocks */
    int seen[8] = {0};
    for (int32_t i = 0; i < a.n_blocks; i++)
        seen[a.blocks[i]]++;
    for (int32_t i = 0; i < b.n_blocks; i++)
        seen[b.blocks[i]]++;
    for (int i = 0; i < 8; i++)
        assert_int_equal(seen[i], 1);

    /* all or nothing */
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 13, &err), SS_ERR_CAPACITY);
    assert_int_equal(a.n_blocks, 3);
    assert_non_null(strstr(err.msg, "1 more blocks needed, 0 available"));

    ss_kv_seq_free(kv, &b);
    assert_int_equal(b.n_blocks, 0);
    assert_null(b.blocks);
    assert_int_equal(used(kv), 3);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 32, &err), SS_OK);
    assert_int_equal(used(kv), 8);
    ss_kv_seq_free(kv, &a);
    ss_kv_seq_free(kv, &a); /* idempotent */
    assert_int_equal(used(kv), 0);
    assert_int_equal(ss_kv_num_available(kv), 8);
    ss_kv_blocks_destroy(kv);
}

/* Shrinking gives back the blocks past those n tokens need (refused draft tokens' blocks), never a published one. */
static void test_shrink(void **state)
{
    (void)state;
    ss_kv_blocks *kv = make(8, 4, 1);
    ss_err err;
    ss_kv_seq a;
    ss_kv_seq_init(&a);
    int32_t t[32];
    fill_tokens(t, 32, 3);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 24, &err), SS_OK); /* 6 blocks */
    ss_kv_seq_commit(kv, &a, t, 9);                                 /* 2 full blocks published */
    assert_int_equal(a.n_hashed, 2);
    ss_kv_seq_shrink(kv, &a, 13); /* 13 tokens: 4 blocks */
    assert_int_equal(a.n_blocks, 4);
    assert_int_equal(used(kv), 4);
    assert_int_equal(ss_kv_num_available(kv), 4);
    ss_kv_seq_shrink(kv, &a, 16); /* nothing past: no change */
    assert_int_equal(a.n_blocks, 4);
    ss_kv_seq_shrink(kv, &a, 1); /* the published blocks stay */
    assert_int_equal(a.n_blocks, 2);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 12, &err), SS_OK); /* and it grows again */
    assert_int_equal(a.n_blocks, 3);
    ss_kv_seq_free(kv, &a);
    assert_int_equal(used(kv), 0);
    ss_kv_blocks_destroy(kv);
}

static void test_prefix_reuse_and_refcounts(void **state)
{
    (void)state;
    ss_kv_blocks *kv = make(16, 4, 1);
    ss_err err;
    int32_t tok[14];
    fill_tokens(tok, 14, 3);

    ss_kv_seq a;
    ss_kv_seq_init(&a);
    int32_t cached = -1;
    assert_int_equal(ss_kv_seq_match_prefix(kv, &a, tok, 14, &cached, &err), SS_OK);
    assert_int_equal(cached, 0);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 14, &err), SS_OK); /* 4 blocks */
    ss_kv_seq_commit(kv, &a, tok, 10);                            /* blocks 0 and 1 full and computed */
    assert_int_equal(a.n_hashed, 2);
    ss_kv_seq_commit(kv, &a, tok, 14); /* 3 full blocks */
    assert_int_equal(a.n_hashed, 3);

    /* same prompt: the first 3 blocks are shared (12 tokens), the 4th (last token) is not */
    ss_kv_seq b;
    ss_kv_seq_init(&b);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &b, tok, 14, &cached, &err), SS_OK);
    assert_int_equal(cached, 12);
    assert_int_equal(b.n_blocks, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b.blocks[i], a.blocks[i]);
    assert_int_equal(used(kv), 4);
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 14, &err), SS_OK);
    assert_int_not_equal(b.blocks[3], a.blocks[3]);
    assert_int_equal(used(kv), 5);

    /* a prompt of exactly 12 tokens: its last token sits in block 2, so only 2 blocks reused */
    ss_kv_seq c;
    ss_kv_seq_init(&c);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &c, tok, 12, &cached, &err), SS_OK);
    assert_int_equal(cached, 8);
    /* diverging in the second block: one block reused */
    int32_t tok2[14];
    memcpy(tok2, tok, sizeof(tok));
    tok2[5] = 499;
    ss_kv_seq d;
    ss_kv_seq_init(&d);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &d, tok2, 14, &cached, &err), SS_OK);
    assert_int_equal(cached, 4);
    /* same tokens in block 1 but a different block 0: no reuse (the hash is a chain) */
    int32_t tok3[14];
    memcpy(tok3, tok, sizeof(tok));
    tok3[0] = 498;
    ss_kv_seq e;
    ss_kv_seq_init(&e);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &e, tok3, 14, &cached, &err), SS_OK);
    assert_int_equal(cached, 0);

    ss_kv_stats st;
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.query_tokens, 14 * 4 + 12);
    assert_int_equal(st.hit_tokens, 12 + 8 + 4);

    /* releasing A keeps shared blocks in use by B; its own 4th block goes back to the free list */
    ss_kv_seq_free(kv, &a);
    assert_int_equal(used(kv), 4);
    ss_kv_seq_free(kv, &b);
    ss_kv_seq_free(kv, &c);
    ss_kv_seq_free(kv, &d);
    ss_kv_seq_free(kv, &e);
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.cached, 3); /* the 3 hashed blocks stay cached */
    assert_int_equal(ss_kv_num_available(kv), 16);

    /* and are found again after everyone left */
    ss_kv_seq f;
    ss_kv_seq_init(&f);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &f, tok, 14, &cached, &err), SS_OK);
    assert_int_equal(cached, 12);
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.used, 3);
    assert_int_equal(st.cached, 0);
    ss_kv_seq_free(kv, &f);
    ss_kv_blocks_destroy(kv);
}

static void test_duplicate_publish(void **state)
{
    (void)state;
    /* two sequences computing the same prompt at once: only one copy is published */
    ss_kv_blocks *kv = make(8, 2, 1);
    ss_err err;
    int32_t tok[5] = {1, 2, 3, 4, 5};
    ss_kv_seq a, b;
    ss_kv_seq_init(&a);
    ss_kv_seq_init(&b);
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 5, &err), SS_OK);
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 5, &err), SS_OK);
    ss_kv_seq_commit(kv, &a, tok, 4);
    ss_kv_seq_commit(kv, &b, tok, 4);
    ss_kv_seq_free(kv, &a);
    ss_kv_seq_free(kv, &b);
    ss_kv_stats st;
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.cached, 2);
    assert_int_equal(st.used, 0);
    ss_kv_seq c;
    ss_kv_seq_init(&c);
    int32_t cached = 0;
    assert_int_equal(ss_kv_seq_match_prefix(kv, &c, tok, 5, &cached, &err), SS_OK);
    assert_int_equal(cached, 4);
    ss_kv_seq_free(kv, &c);
    ss_kv_blocks_destroy(kv);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    ss_kv_blocks *kv = make(4, 2, 1);
    ss_err err;
    int32_t p1[5] = {10, 11, 12, 13, 14};
    int32_t p2[5] = {20, 21, 22, 23, 24};
    int32_t cached = 0;
    ss_kv_seq a, b, c;
    ss_kv_seq_init(&a);
    ss_kv_seq_init(&b);
    ss_kv_seq_init(&c);
    /* p1 fills blocks with 2 cached full blocks, then is released (blocks 0,1 cached; block 2 free) */
    assert_int_equal(ss_kv_seq_reserve(kv, &a, 5, &err), SS_OK);
    ss_kv_seq_commit(kv, &a, p1, 5);
    ss_kv_seq_free(kv, &a);
    ss_kv_stats st;
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.cached, 2);
    assert_int_equal(ss_kv_num_available(kv), 4);
    /* p2 needs 3 blocks: 2 free ones, then the LRU cached one — the leaf (p1's block 1) goes first */
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 5, &err), SS_OK);
    ss_kv_seq_commit(kv, &b, p2, 4);
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.cached, 1);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &c, p1, 5, &cached, &err), SS_OK);
    assert_int_equal(cached, 2); /* p1's root block survived */
    ss_kv_seq_free(kv, &c);
    /* now take everything: the last cached block is evicted too, and the pool is exhausted */
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 8, &err), SS_OK);
    assert_int_equal(ss_kv_num_available(kv), 0);
    assert_int_equal(ss_kv_seq_reserve(kv, &b, 9, &err), SS_ERR_CAPACITY);
    assert_int_equal(ss_kv_seq_match_prefix(kv, &c, p1, 5, &cached, &err), SS_OK);
    assert_int_equal(cached, 0);
    ss_kv_seq_free(kv, &c);
    ss_kv_seq_free(kv, &b);
    ss_kv_stats_get(kv, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.evictions, 2);
    ss_kv_blocks_destroy(kv);
}

/* Many sequences sharing and evicting at random: invariants hold and every block comes back. */
static void test_churn(void **state)
{
    (void)state;
    ss_kv_blocks *kv = make(64, 4, 1);
    ss_err err;
    enum { NS = 12 };
    ss_kv_seq seqs[NS];
    int32_t toks[NS][40];
    for (int i = 0; i < NS; i++)
        ss_kv_seq_init(&seqs[i]);
    uint64_t rng = 12345;
    for (int iter = 0; iter < 4000; iter++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int i = (int)((rng >> 33) % NS);
        ss_kv_seq *s = &seqs[i];
        if (s->n_blocks == 0) {
            int32_t n = 5 + (int32_t)((rng >> 20) % 35);
            for (int32_t t = 0; t < n; t++)
                toks[i][t] = (int32_t)((t < 12) ? ((rng >> 40) % 3) * 100 + t : (int32_t)((rng >> (t % 30)) & 511));
            int32_t cached;
            assert_int_equal(ss_kv_seq_match_prefix(kv, s, toks[i], n, &cached, &err), SS_OK);
            assert_true(cached < n);
            assert_int_equal(cached % 4, 0);
            if (ss_kv_seq_reserve(kv, s, n, &err) == SS_OK)
                ss_kv_seq_commit(kv, s, toks[i], n);
            else
                ss_kv_seq_free(kv, s);
        } else {
            ss_kv_seq_free(kv, s);
        }
        /* a block held by two sequences is a shared prefix: same index, same tokens up to its end */
        int64_t distinct = 0;
        for (int x = 0; x < NS; x++)
            for (int32_t bx = 0; bx < seqs[x].n_blocks; bx++) {
                int first = 1;
                for (int y = 0; y < NS; y++)
                    for (int32_t by = 0; by < seqs[y].n_blocks; by++) {
                        if (seqs[y].blocks[by] != seqs[x].blocks[bx] || (x == y && bx == by))
                            continue;
                        assert_int_not_equal(x, y);
                        assert_int_equal(bx, by);
                        assert_memory_equal(toks[x], toks[y], (size_t)(bx + 1) * 4 * sizeof(int32_t));
                        if (y < x)
                            first = 0;
                    }
                distinct += first;
            }
        assert_int_equal(used(kv), distinct);
    }
    for (int i = 0; i < NS; i++)
        ss_kv_seq_free(kv, &seqs[i]);
    assert_int_equal(used(kv), 0);
    assert_int_equal(ss_kv_num_available(kv), 64);
    ss_kv_blocks_destroy(kv);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0; n < 12; n++) {
        ss_kv_blocks *kv = NULL;
        ss_err err;
        ss_alloc_fail_after(n);
        ss_status st = ss_kv_blocks_create(8, 4, 1, &kv, &err);
        if (st == SS_OK) {
            ss_kv_seq a;
            ss_kv_seq_init(&a);
            st = ss_kv_seq_reserve(kv, &a, 9, &err);
            assert_true(st == SS_OK || st == SS_ERR_NOMEM);
            ss_kv_seq_free(kv, &a);
            ss_kv_blocks_destroy(kv);
        } else {
            assert_int_equal(st, SS_ERR_NOMEM);
            assert_null(kv);
        }
        ss_alloc_fail_after(-1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_errors),
        cmocka_unit_test(test_alloc_free_exhaustion),
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_prefix_reuse_and_refcounts),
        cmocka_unit_test(test_duplicate_publish),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
