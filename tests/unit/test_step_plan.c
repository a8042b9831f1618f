/* test_step_plan.c — step plans on the wire (runner/step_plan.c): every field survives encode + decode, and a
 * message cut short, padded or with a lying count is refused (never read past its end: see the ASan build); which
 * entries continue each other (a speculating sequence's drafts, one sequence of the forward pass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/alloc.h"
#include "runner/step_plan.h"

/* Two sequences: a prefill chunk that does not sample, and a decode step with every per-sequence list. */
static void make_plan(ss_step_plan *p, ss_plan_seq seqs[2], int32_t *tokens)
{
    static int32_t blocks0[] = {3, 4}, blocks1[] = {9}, pen[] = {5, 6, 5}, banned[] = {2}, bias_ids[] = {7, 0, 11};
    static float bias_vals[] = {100.0f, -100.0f, 0.25f};
    static uint32_t allow[] = {0x80000001u, 0x5u};
    memset(seqs, 0, 2 * sizeof *seqs);
    seqs[0] = (ss_plan_seq){.seq_id = 41, .n_tokens = 3, .pos_start = 0, .n_blocks = 2, .blocks = blocks0};
    seqs[0].sp = ss_sampling_default();
    seqs[1] = (ss_plan_seq){.seq_id = 42, .n_tokens = 1, .pos_start = 17, .n_blocks = 1, .blocks = blocks1,
                            .sample = 1, .rng_counter = 5, .n_penalty_tokens = 3, .penalty_tokens = pen,
                            .n_banned = 1, .banned = banned, .n_bias = 3, .bias_ids = bias_ids,
                            .bias_vals = bias_vals, .n_allow = 2, .allow = allow};
    seqs[1].sp = ss_sampling_default();
    seqs[1].sp.temperature = 0.7f, seqs[1].sp.top_k = 40, seqs[1].sp.seed = 0x123456789abcull;
    seqs[1].sp.presence_penalty = 0.5f, seqs[1].sp.n_logprobs = 3;
    tokens[0] = 1, tokens[1] = 2, tokens[2] = 3, tokens[3] = SS_TOKEN_PREV;
    *p = (ss_step_plan){.step_id = 99, .flags = SS_PLAN_LAST_LOGITS, .n_seqs = 2, .seqs = seqs, .n_tokens = 4,
                        .tokens = tokens};
}

/* The sample plan's bytes (*buf owned by the caller). */
static void encoded(uint8_t **buf, size_t *len)
{
    ss_plan_seq seqs[2];
    int32_t tokens[4];
    ss_step_plan p;
    make_plan(&p, seqs, tokens);
    ss_err err = {{0}};
    assert_int_equal(ss_step_plan_encode(&p, buf, len, &err), SS_OK);
}

static void test_round_trip(void **state)
{
    (void)state;
    ss_plan_seq seqs[2];
    int32_t tokens[4];
    ss_step_plan p, d;
    make_plan(&p, seqs, tokens);
    uint8_t *buf = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    assert_int_equal(ss_step_plan_encode(&p, &buf, &len, &err), SS_OK);
    assert_int_equal(ss_step_plan_decode(buf, len, &d, &err), SS_OK);
    assert_true(d.step_id == 99 && d.flags == SS_PLAN_LAST_LOGITS && d.n_seqs == 2 && d.n_tokens == 4);
    assert_memory_equal(d.tokens, tokens, sizeof tokens);
    for (int s = 0; s < 2; s++) {
        const ss_plan_seq *a = &p.seqs[s], *b = &d.seqs[s];
        assert_true(a->seq_id == b->seq_id && a->n_tokens == b->n_tokens && a->pos_start == b->pos_start);
        assert_true(a->sample == b->sample && a->rng_counter == b->rng_counter);
        assert_memory_equal(&a->sp, &b->sp, sizeof a->sp);
        assert_int_equal(b->n_blocks, a->n_blocks);
        assert_memory_equal(b->blocks, a->blocks, (size_t)a->n_blocks * 4);
        assert_int_equal(b->n_penalty_tokens, a->n_penalty_tokens);
        assert_int_equal(b->n_banned, a->n_banned);
        assert_int_equal(b->n_bias, a->n_bias);
        for (int32_t i = 0; i < a->n_penalty_tokens; i++)
            assert_int_equal(b->penalty_tokens[i], a->penalty_tokens[i]);
        for (int32_t i = 0; i < a->n_banned; i++)
            assert_int_equal(b->banned[i], a->banned[i]);
        for (int32_t i = 0; i < a->n_bias; i++) {
            assert_int_equal(b->bias_ids[i], a->bias_ids[i]);
            assert_true(b->bias_vals[i] == a->bias_vals[i]);
        }
        assert_int_equal(b->n_allow, a->n_allow);
        assert_true((b->allow == NULL) == (a->allow == NULL));
        for (int32_t i = 0; i < a->n_allow; i++)
            assert_true(b->allow[i] == a->allow[i]);
    }
    ss_step_plan_free(&d);
    ss_free(buf);
}

/* Every prefix of a valid message, the message with a byte more, and the message with a lying logit_bias
 * count are refused with SS_ERR_FORMAT. */
static void test_refused(void **state)
{
    (void)state;
    ss_step_plan d;
    uint8_t *buf = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    encoded(&buf, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = ss_malloc(n ? n : 1); /* exactly n bytes: reading past them is an ASan error */
        assert_non_null(cut);
        memcpy(cut, buf, n);
        assert_int_equal(ss_step_plan_decode(cut, n, &d, &err), SS_ERR_FORMAT);
        ss_free(cut);
    }
    uint8_t *more = ss_malloc(len + 1);
    assert_non_null(more);
    memcpy(more, buf, len);
    more[len] = 0;
    assert_int_equal(ss_step_plan_decode(more, len + 1, &d, &err), SS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "trailing"));
    ss_free(more);
    /* a JSON-mode mask whose count lies (larger than the bytes left): the message's tail is the last
     * sequence's mask, a 64-bit count then 2 words */
    size_t mask_at = len - 2 * 4 - 8;
    uint64_t words;
    memcpy(&words, buf + mask_at, 8);
    assert_true(words == 2);
    static const uint64_t mask_lies[] = {3, 1ull << 40};
    for (size_t i = 0; i < sizeof mask_lies / sizeof mask_lies[0]; i++) {
        memcpy(buf + mask_at, &mask_lies[i], 8);
        assert_int_equal(ss_step_plan_decode(buf, len, &d, &err), SS_ERR_FORMAT);
    }
    memcpy(buf + mask_at, &words, 8);
    /* a logit_bias count that lies (larger than the bytes left, or above SS_MAX_LOGIT_BIAS): before the mask
     * comes the last sequence's bias: its count, then 3 pairs of 8 bytes */
    size_t at = mask_at - 3 * 8 - 4;
    uint32_t n;
    memcpy(&n, buf + at, 4);
    assert_int_equal(n, 3);
    static const uint32_t lies[] = {4, 0x7fffffffu, SS_MAX_LOGIT_BIAS + 1};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(buf + at, &lies[i], 4);
        assert_int_equal(ss_step_plan_decode(buf, len, &d, &err), SS_ERR_FORMAT);
    }
    ss_free(buf);
}

static void test_continues(void **state)
{
    (void)state;
    static int32_t blocks[] = {3, 4, 8}, copy[] = {3, 4, 8}, other[] = {3, 5, 8};
    /* a sequence's token at 31 (blocks of 16: two cover it), and its drafts at 32 and 33 (a third block) */
    ss_plan_seq tok = {.seq_id = 7, .n_tokens = 1, .pos_start = 31, .n_blocks = 2, .blocks = blocks};
    ss_plan_seq d1 = {.seq_id = 7, .n_tokens = 1, .pos_start = 32, .n_blocks = 3, .blocks = blocks};
    ss_plan_seq d2 = {.seq_id = 7, .n_tokens = 1, .pos_start = 33, .n_blocks = 3, .blocks = copy};
    assert_int_equal(ss_plan_seq_continues(&tok, &d1), 1);
    assert_int_equal(ss_plan_seq_continues(&d1, &d2), 1); /* equal blocks in another array (a decoded plan) */
    assert_int_equal(ss_plan_seq_continues(&d1, &tok), 0); /* backwards */
    assert_int_equal(ss_plan_seq_continues(&tok, &d2), 0); /* a gap */
    ss_plan_seq x = d1;
    x.seq_id = 8; /* another sequence */
    assert_int_equal(ss_plan_seq_continues(&tok, &x), 0);
    x = d1;
    x.blocks = other; /* the same id, other blocks: its keys are elsewhere */
    assert_int_equal(ss_plan_seq_continues(&tok, &x), 0);
    x = d1;
    x.n_blocks = 1; /* fewer blocks than the entry before */
    assert_int_equal(ss_plan_seq_continues(&tok, &x), 0);
    ss_plan_seq chunk = {.seq_id = 7, .n_tokens = 20, .pos_start = 12, .n_blocks = 2, .blocks = blocks};
    assert_int_equal(ss_plan_seq_continues(&chunk, &d1), 1); /* after a chunk ending at 31 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_continues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
