/* test_sched_spec.c — speculative decoding's pieces: prompt lookup's draft tokens (the latest earlier occurrence of the
 * longest matching tail, 4 down to 2 tokens, the tokens after it, repeating past the end), the room for drafts in
 * a step, the drafts written after a growing token buffer, the confirmed prefix, and the pauses after failed drafts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include "core/alloc.h"
#include "serve/sched_spec.h"
#include "serve/spec_ngram.h"

#define N(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

static void test_latest_longest_match(void **state)
{
    (void)state;
    int32_t out[8];
    /* tail 7 8: at 1 (followed by 9 10 11) and at 6 (followed by 12 13); the latest wins */
    const int32_t a[] = {1, 7, 8, 9, 10, 11, 7, 8, 12, 13, 7, 8};
    assert_int_equal(ss_spec_ngram_propose(a, N(a), 3, out), 3);
    assert_int_equal(out[0], 12);
    assert_int_equal(out[1], 13);
    assert_int_equal(out[2], 7);
    /* the tail 5 7 8 matches only the earlier place: three tokens beat two */
    const int32_t b[] = {5, 7, 8, 9, 10, 6, 7, 8, 11, 5, 7, 8};
    assert_int_equal(ss_spec_ngram_propose(b, N(b), 2, out), 2);
    assert_int_equal(out[0], 9);
    assert_int_equal(out[1], 10);
    /* four tokens: 1 2 3 4 occurs twice, 2 3 4 three times */
    const int32_t c[] = {1, 2, 3, 4, 20, 9, 2, 3, 4, 30, 1, 2, 3, 4};
    assert_int_equal(ss_spec_ngram_propose(c, N(c), 1, out), 1);
    assert_int_equal(out[0], 20);
}

static void test_bounds(void **state)
{
    (void)state;
    int32_t out[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    /* the match's continuation runs into the tail itself: the loop goes on, k tokens and not one more */
    const int32_t loop[] = {4, 4, 4, 4};
    assert_int_equal(ss_spec_ngram_propose(loop, N(loop), 7, out), 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(out[i], 4);
    assert_int_equal(out[7], -1); /* nothing written past the count */
    const int32_t cycle[] = {1, 2, 3, 1, 2, 3, 1, 2};
    assert_int_equal(ss_spec_ngram_propose(cycle, N(cycle), 5, out), 5); /* 1 2 at 3: 3, then 1 2 3 ... */
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
    assert_int_equal(out[3], 3);
    assert_int_equal(out[4], 1);
    const int32_t none[] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(ss_spec_ngram_propose(none, N(none), 4, out), 0);
    /* one token alone never matches (the shortest n-gram is 2) */
    const int32_t one[] = {1, 9, 2, 9};
    assert_int_equal(ss_spec_ngram_propose(one, N(one), 4, out), 0);
    const int32_t pair[] = {3, 9, 5, 3, 9};
    assert_int_equal(ss_spec_ngram_propose(pair, N(pair), 0, out), 0); /* k 0: nothing */
    assert_int_equal(ss_spec_ngram_propose(pair, 2, 4, out), 0);        /* too short to repeat */
    assert_int_equal(ss_spec_ngram_propose(pair, 0, 4, out), 0);
    assert_int_equal(ss_spec_ngram_propose(pair, N(pair), 4, out), 4); /* 5 3 9, then 5 again */
    assert_int_equal(out[0], 5);
    assert_int_equal(out[1], 3);
    assert_int_equal(out[2], 9);
    assert_int_equal(out[3], 5);
}

static void test_room(void **state)
{
    (void)state;
    assert_int_equal(ss_spec_room(7, 4, 1, 256, 512), 7);
    assert_int_equal(ss_spec_room(7, 4, 4, 256, 512), 7);
    assert_int_equal(ss_spec_room(7, 4, 5, 256, 512), 0);  /* more sequences than speculate */
    assert_int_equal(ss_spec_room(0, 4, 1, 256, 512), 0);  /* off */
    assert_int_equal(ss_spec_room(7, 4, 0, 256, 512), 0);  /* nobody runs */
    assert_int_equal(ss_spec_room(7, 4, 3, 16, 512), 4);   /* 16 entries: 3 own, 13 left, 4 each */
    assert_int_equal(ss_spec_room(7, 4, 4, 256, 13), 2);   /* 13 tokens: 4 own, 9 left, 2 each */
    assert_int_equal(ss_spec_room(7, 4, 2, 2, 512), 0);    /* no entry to spare */
    assert_int_equal(ss_spec_room(7, 64, 32, 256, 48), 0); /* 48 tokens for 32 sequences */
}

static void test_propose_grows_and_confirm(void **state)
{
    (void)state;
    const int32_t seq[] = {6, 1, 2, 3, 6, 1};
    int32_t cap = 6, *t = ss_malloc(sizeof seq);
    memcpy(t, seq, sizeof seq);
    assert_int_equal(ss_spec_propose(&t, &cap, 5, 3), 0); /* the first five: the tail 3 6 is new */
    assert_int_equal(ss_spec_propose(&t, &cap, 6, 3), 3); /* the tail 6 1 at 0: drafts 2 3 6, the buffer grown */
    assert_true(cap >= 9);
    assert_memory_equal(t, seq, sizeof seq); /* the tokens stay */
    assert_int_equal(t[6], 2);
    assert_int_equal(t[7], 3);
    assert_int_equal(t[8], 6);
    const int32_t sampled[] = {2, 3, 9, 1};
    assert_int_equal(ss_spec_confirmed(sampled, t + 6, 3), 2);
    assert_int_equal(ss_spec_confirmed(sampled, t + 6, 1), 1);
    assert_int_equal(ss_spec_confirmed(sampled + 1, t + 6, 3), 0);
    assert_int_equal(ss_spec_confirmed(sampled, t + 6, 0), 0);
    ss_free(t);
}

/* The bound on draft rows times context keys: a quarter of the weights in KV reads (Llama-3-8B's shape: 28,628 keys,
 * so 7 drafts at 4,000 tokens and 3 at 8,000), or 64 Mi elements for a small model. */
static void test_keys_bound(void **state)
{
    (void)state;
    ss_model_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = 32;
    c.hidden_size = 4096;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.intermediate_size = 14336;
    c.vocab_size = 128256;
    assert_int_equal((int)ss_spec_keys(&c), 28628);
    c.n_layers = 4; /* 4 layers of it: 0.25 of the weights is under the floor */
    c.hidden_size = 256;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.intermediate_size = 512;
    c.vocab_size = 1000;
    assert_int_equal((int)ss_spec_keys(&c), 64 * 1024 * 1024 / (2 * 4 * 2 * 64));
}

/* The drafts the bound leaves a sequence where its token and drafts read its keys once a tile: n drafts add n / tile
 * reads of its context. */
static void test_keys_room(void **state)
{
    (void)state;
    /* each token reads its keys (tile 1): 28,628 keys leave 7 drafts at 4,000 tokens, 3 at 8,000, none at 30,000 */
    assert_int_equal(ss_spec_keys_room(7, 28628, 4000, 1), 7);
    assert_int_equal(ss_spec_keys_room(7, 28628, 8000, 1), 3);
    assert_int_equal(ss_spec_keys_room(7, 28628, 30000, 1), 0);
    assert_int_equal(ss_spec_draft_keys(3, 8000, 1), 24000.0);
    /* tiles of 8: 7 drafts add nothing, at any context; 8..15 add one read */
    assert_int_equal(ss_spec_keys_room(7, 0, 100000, 8), 7);
    assert_int_equal(ss_spec_keys_room(16, 0, 100000, 8), 7);
    assert_int_equal(ss_spec_keys_room(16, 28628, 8000, 8), 16); /* 2 reads, 16,000 keys */
    assert_int_equal(ss_spec_keys_room(20, 28628, 20000, 8), 15); /* 1 read: up to 15 */
    assert_int_equal(ss_spec_draft_keys(7, 100000, 8), 0.0);
    assert_int_equal(ss_spec_draft_keys(8, 100000, 8), 100000.0);
    assert_int_equal(ss_spec_draft_keys(15, 20000, 8), 20000.0);
    /* tiles of 4, no keys left: 3 drafts; and k itself is the first bound */
    assert_int_equal(ss_spec_keys_room(6, 0, 500, 4), 3);
    assert_int_equal(ss_spec_keys_room(2, 0, 500, 4), 2);
    assert_int_equal(ss_spec_keys_room(0, 1e9, 500, 4), 0);
    assert_int_equal(ss_spec_keys_room(5, HUGE_VAL, 500, 1), 5); /* no bound */
}

/* Drafting pauses 1, 2, then 4 steps after steps in a row that confirmed none of their drafts; a confirmed draft
 * resets the doubling; a guess that comes true ends a pause. */
static void test_pace(void **state)
{
    (void)state;
    ss_spec_pace p = {0};
    assert_true(ss_spec_pace_draft(&p));
    const int32_t want[] = {1, 2, 4, 4, 4, 4};
    for (int m = 0; m < 6; m++) {
        ss_spec_pace_after(&p, 0);
        for (int32_t i = 0; i < want[m]; i++)
            assert_false(ss_spec_pace_draft(&p));
        assert_true(ss_spec_pace_draft(&p));
    }
    ss_spec_pace_after(&p, 1); /* a hit: the next miss pauses one step again */
    assert_true(ss_spec_pace_draft(&p));
    ss_spec_pace_after(&p, 0);
    assert_false(ss_spec_pace_draft(&p));
    assert_true(ss_spec_pace_draft(&p));
    /* a guess that comes true ends a pause at once; one that does not changes nothing, and is used once */
    for (int m = 0; m < 4; m++)
        ss_spec_pace_after(&p, 0); /* paused 4 steps */
    assert_false(ss_spec_pace_draft(&p));
    ss_spec_pace_guess(&p, 0);
    ss_spec_pace_token(&p, 5);
    assert_false(ss_spec_pace_draft(&p));
    ss_spec_pace_guess(&p, 7);
    ss_spec_pace_token(&p, 7);
    assert_true(ss_spec_pace_draft(&p));
    ss_spec_pace_after(&p, 0); /* the doubling starts again */
    assert_false(ss_spec_pace_draft(&p));
    assert_true(ss_spec_pace_draft(&p));
    ss_spec_pace_token(&p, 7); /* no guess pending: nothing */
    assert_true(ss_spec_pace_draft(&p));
}

/* Adaptive lengths: all confirmed doubles what the sequence may draft (up to k_max), a miss leaves one more than were
 * confirmed; a length cut short by other bounds doubles from the length, not from the drafts; no drafts: no change. */
static void test_adaptive_len(void **state)
{
    (void)state;
    ss_spec_pace p = {0};
    ss_spec_pace_len(&p, 7, 2, 7); /* 2 of 7 */
    assert_int_equal(p.len, 3);
    ss_spec_pace_len(&p, 3, 3, 7);
    assert_int_equal(p.len, 6);
    ss_spec_pace_len(&p, 6, 6, 7);
    assert_int_equal(p.len, 7); /* at most k_max */
    ss_spec_pace_len(&p, 7, 0, 7);
    assert_int_equal(p.len, 1);
    ss_spec_pace_len(&p, 0, 0, 7); /* a step without drafts */
    assert_int_equal(p.len, 1);
    ss_spec_pace_len(&p, 1, 1, 7);
    assert_int_equal(p.len, 2);
    p.len = 4;
    ss_spec_pace_len(&p, 2, 2, 7); /* cut to 2 by the KV bound: 8, at most 7 */
    assert_int_equal(p.len, 7);
    p.len = 0; /* unset: as many as allowed */
    ss_spec_pace_len(&p, 3, 3, 5);
    assert_int_equal(p.len, 5);
    p.len = 9; /* over a k_max that shrank */
    ss_spec_pace_len(&p, 4, 1, 4);
    assert_int_equal(p.len, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latest_longest_match),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_room),
        cmocka_unit_test(test_keys_room),
        cmocka_unit_test(test_propose_grows_and_confirm),
        cmocka_unit_test(test_keys_bound),
        cmocka_unit_test(test_pace),
        cmocka_unit_test(test_adaptive_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
