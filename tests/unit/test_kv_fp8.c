/* test_kv_fp8.c — the fp8 KV cache's format: e4m3 conversion (every code, every rounding midpoint,
 * saturation), the row quantisation and block layout of backend.h, the --kv-cache-dtype parser, and the cpu
 * backend's kv_store and attention over fp8 blocks against the same ops over f32. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/status.h"

static void test_e4m3_decode(void **state)
{
    (void)state;
    static const struct {
        uint8_t code;
        float value;
    } known[] = {
        {0x00, 0.0f},   {0x01, 0x1p-9f},  {0x07, 7 * 0x1p-9f}, {0x08, 0x1p-6f}, {0x38, 1.0f},     {0x39, 1.125f},
        {0x3f, 1.875f}, {0x40, 2.0f},     {0x77, 240.0f},      {0x7e, 448.0f},  {0x81, -0x1p-9f}, {0xb8, -1.0f},
        {0xfe, -448.0f},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (ss_e4m3_to_f32(known[i].code) != known[i].value)
            fail_msg("e4m3 0x%02x decodes to %g, not %g", known[i].code, ss_e4m3_to_f32(known[i].code), known[i].value);
    assert_true(isnan(ss_e4m3_to_f32(0x7f)));
    assert_true(isnan(ss_e4m3_to_f32(0xff)));
    assert_true(signbit(ss_e4m3_to_f32(0x80)) && ss_e4m3_to_f32(0x80) == 0.0f);
    /* strictly increasing over the positive codes: every value distinct, in order */
    for (int c = 0; c < 0x7e; c++)
        assert_true(ss_e4m3_to_f32((uint8_t)c) < ss_e4m3_to_f32((uint8_t)(c + 1)));
}

static void test_e4m3_encode(void **state)
{
    (void)state;
    /* every finite code encodes back to itself */
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f)
            continue;
        const uint8_t got = ss_f32_to_e4m3(ss_e4m3_to_f32((uint8_t)c));
        if (got != c)
            fail_msg("e4m3 0x%02x: decode then encode gives 0x%02x", c, got);
    }
    /* every midpoint between neighbours rounds to the even code; just off it, to the nearer one */
    for (int c = 0; c < 0x7e; c++) {
        const float lo = ss_e4m3_to_f32((uint8_t)c), hi = ss_e4m3_to_f32((uint8_t)(c + 1));
        const float mid = (lo + hi) / 2; /* exact in f32 */
        const int even = (c & 1) ? c + 1 : c;
        for (int s = 0; s < 2; s++) {
            const float sign = s ? -1.0f : 1.0f;
            const uint8_t sb = s ? 0x80 : 0x00;
            if (ss_f32_to_e4m3(sign * mid) != (uint8_t)(sb | even))
                fail_msg("midpoint %g between 0x%02x and 0x%02x gives 0x%02x", sign * mid, c, c + 1,
                         ss_f32_to_e4m3(sign * mid));
            assert_int_equal(ss_f32_to_e4m3(sign * nextafterf(mid, 0.0f)), sb | c);
            assert_int_equal(ss_f32_to_e4m3(sign * nextafterf(mid, 1000.0f)), sb | (c + 1));
        }
    }
    /* saturation (satfinite), infinities, NaN, and values below half the smallest subnormal */
    assert_int_equal(ss_f32_to_e4m3(448.0f), 0x7e);
    assert_int_equal(ss_f32_to_e4m3(464.0f), 0x7e); /* the tie above 448 goes to the even 448 */
    assert_int_equal(ss_f32_to_e4m3(465.0f), 0x7e);
    assert_int_equal(ss_f32_to_e4m3(1e30f), 0x7e);
    assert_int_equal(ss_f32_to_e4m3(-1e30f), 0xfe);
    assert_int_equal(ss_f32_to_e4m3(INFINITY), 0x7e);
    assert_int_equal(ss_f32_to_e4m3(-INFINITY), 0xfe);
    assert_int_equal(ss_f32_to_e4m3(NAN), 0x7f);
    assert_int_equal(ss_f32_to_e4m3(0x1p-10f), 0x00); /* half the smallest subnormal: the tie goes to 0 */
    assert_int_equal(ss_f32_to_e4m3(-0x1p-12f), 0x80);
    assert_int_equal(ss_f32_to_e4m3(0x1p-126f), 0x00);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static float urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / 16777216.0f;
}

static void test_quant_row(void **state)
{
    (void)state;
    enum { N = 128 };
    float x[N];
    uint8_t q[N];
    float scale;
    const float mags[] = {1e-6f, 0.01f, 1.0f, 3000.0f};
    for (size_t m = 0; m < sizeof mags / sizeof mags[0]; m++) {
        for (int i = 0; i < N; i++)
            x[i] = (2.0f * urand() - 1.0f) * mags[m];
        x[17] = 1.25f * mags[m]; /* the row's largest magnitude */
        ss_kv_fp8_quant_row(x, N, q, &scale);
        assert_true(scale == 1.25f * mags[m] / 448.0f);
        assert_int_equal(q[17], 0x7e); /* the largest magnitude lands on 448 */
        for (int i = 0; i < N; i++) {
            /* within half an e4m3 step of the scaled value: 2^-4 of it (normal) or 2^-10 (subnormal) */
            const float y = x[i] * (448.0f / (1.25f * mags[m]));
            const float err = fabsf(ss_e4m3_to_f32(q[i]) * scale - x[i]);
            const float bound = (fabsf(y) * 0x1p-4f + 0x1p-10f) * scale * 1.0001f;
            if (err > bound)
                fail_msg("row of magnitude %g, element %d: %g stored as %g", mags[m], i, x[i],
                         ss_e4m3_to_f32(q[i]) * scale);
        }
    }
    memset(x, 0, sizeof x);
    memset(q, 0xaa, sizeof q);
    ss_kv_fp8_quant_row(x, N, q, &scale);
    assert_true(scale == 0.0f);
    for (int i = 0; i < N; i++)
        assert_int_equal(q[i], 0);
}

static void test_block_layout_and_parse(void **state)
{
    (void)state;
    assert_int_equal(ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_BF16, 16, 8, 128), 16 * 8 * 128 + 512);
    assert_int_equal(ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_BF16, 16, 1, 128), 16 * 128 + 128); /* 64 B padded */
    assert_int_equal(ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_F32, 7, 3, 64), 7 * 3 * 64 + 128);
    assert_int_equal(ss_kv_block_bytes(SS_KV_ACT, SS_DTYPE_BF16, 16, 8, 128), 16 * 8 * 128 * 2);
    assert_int_equal(ss_kv_block_bytes(SS_KV_ACT, SS_DTYPE_F32, 4, 2, 64), 4 * 2 * 64 * 4);
    /* rows: [block][offset][head]; scales after the block's rows, [head][offset] */
    const size_t bb = ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_BF16, 16, 8, 128);
    assert_int_equal(ss_kv_fp8_row_offset(16, 8, 128, 0, 0), 0);
    assert_int_equal(ss_kv_fp8_row_offset(16, 8, 128, 1, 0), 8 * 128);
    assert_int_equal(ss_kv_fp8_row_offset(16, 8, 128, 35, 3), 2 * bb + (3 * 8 + 3) * 128);
    assert_int_equal(ss_kv_fp8_scale_offset(16, 8, 128, 0, 0), 16 * 8 * 128);
    assert_int_equal(ss_kv_fp8_scale_offset(16, 8, 128, 35, 3), 2 * bb + 16 * 8 * 128 + (3 * 16 + 3) * 4);
    assert_int_equal(bb % 128, 0);
    ss_kv_type t = SS_KV_FP8;
    ss_err e;
    assert_int_equal(ss_kv_type_parse("auto", &t, &e), SS_OK);
    assert_int_equal(t, SS_KV_ACT);
    assert_int_equal(ss_kv_type_parse("fp8", &t, &e), SS_OK);
    assert_int_equal(t, SS_KV_FP8);
    t = SS_KV_ACT;
    assert_int_equal(ss_kv_type_parse("fp8_e4m3", &t, &e), SS_OK);
    assert_int_equal(t, SS_KV_FP8);
    assert_int_equal(ss_kv_type_parse("fp8_e5m2", &t, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "'fp8_e5m2'"));
    assert_int_equal(ss_kv_type_parse("", &t, &e), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_kv_type_parse(NULL, &t, &e), SS_ERR_INVALID_ARG);
    assert_string_equal(ss_kv_type_name(SS_KV_FP8), "fp8");
}

/* kv_store writes the block layout of backend.h byte for byte; attention over fp8 blocks matches attention
 * over the same rows decoded to f32 (the act cache of a second cpu backend). */
static void test_cpu_store_and_attention(void **state)
{
    (void)state;
    ss_backend_params prm = ss_backend_default_params();
    prm.device = SS_DEVICE_CPU;
    prm.n_threads = 1;
    ss_backend *b8 = NULL, *bf = NULL;
    ss_err e;
    assert_int_equal(ss_backend_create(&prm, &bf, &e), SS_OK);
    prm.kv_type = SS_KV_FP8;
    assert_int_equal(ss_backend_create(&prm, &b8, &e), SS_OK);
    assert_int_equal(b8->kv_type, SS_KV_FP8);
    enum { KV = 3, HD = 32, HEADS = 6, BS = 4, NBLK = 6, NSLOT = BS * NBLK, NTOK = 9 };
    const size_t bb = ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_F32, BS, KV, HD); /* 4 x 3 x 32 + 128 */
    float *k = malloc(NTOK * 3 * KV * HD * sizeof(float)); /* rows of [k | v | unused], stride 3 * KV * HD */
    assert_non_null(k);
    for (int i = 0; i < NTOK * 3 * KV * HD; i++)
        k[i] = (2.0f * urand() - 1.0f) * (i % 7 == 0 ? 5.0f : 0.5f);
    /* tokens 0..8 of one sequence at positions 0..8 whose blocks are 5, 2, 4 (slots 20.., 8.., 16..) */
    const int32_t blocks[3] = {5, 2, 4};
    int32_t slots[NTOK], tok_seq[NTOK], tok_pos[NTOK], seq_len = NTOK;
    for (int i = 0; i < NTOK; i++) {
        slots[i] = blocks[i / BS] * BS + i % BS;
        tok_seq[i] = 0;
        tok_pos[i] = i;
    }
    uint8_t *c8k = calloc(NBLK, bb), *c8v = calloc(NBLK, bb);
    float *cfk = calloc(NSLOT, KV * HD * sizeof(float)), *cfv = calloc(NSLOT, KV * HD * sizeof(float));
    assert_true(c8k && c8v && cfk && cfv);
    const int64_t stride = 3 * KV * HD;
    assert_int_equal(b8->iface->kv_store(b8->ctx, c8k, c8v, k, k + KV * HD, slots, NTOK, KV, HD, stride, BS), SS_OK);
    /* the bytes: every written slot as ss_kv_fp8_quant_row makes it; the other slots untouched (zero) */
    for (int s = 0; s < NSLOT; s++) {
        int tok = -1;
        for (int i = 0; i < NTOK; i++)
            tok = slots[i] == s ? i : tok;
        for (int h = 0; h < KV; h++) {
            for (int which = 0; which < 2; which++) {
                const uint8_t *c = which ? c8v : c8k;
                uint8_t q[HD];
                float sc = 0.0f, got;
                memset(q, 0, sizeof q);
                if (tok >= 0)
                    ss_kv_fp8_quant_row(k + tok * stride + which * KV * HD + h * HD, HD, q, &sc);
                memcpy(&got, c + ss_kv_fp8_scale_offset(BS, KV, HD, (size_t)s, h), 4);
                if (memcmp(c + ss_kv_fp8_row_offset(BS, KV, HD, (size_t)s, h), q, HD) != 0 || got != sc)
                    fail_msg("slot %d head %d (%s): not the row format of backend.h", s, h, which ? "v" : "k");
            }
        }
    }
    /* the same rows, decoded, into the f32 backend's cache */
    for (int s = 0; s < NSLOT; s++)
        for (int h = 0; h < KV; h++) {
            float sk, sv;
            const size_t so = ss_kv_fp8_scale_offset(BS, KV, HD, (size_t)s, h);
            const size_t ro = ss_kv_fp8_row_offset(BS, KV, HD, (size_t)s, h);
            memcpy(&sk, c8k + so, 4);
            memcpy(&sv, c8v + so, 4);
            for (int d = 0; d < HD; d++) {
                cfk[(s * KV + h) * HD + d] = ss_e4m3_to_f32(c8k[ro + d]) * sk;
                cfv[(s * KV + h) * HD + d] = ss_e4m3_to_f32(c8v[ro + d]) * sv;
            }
        }
    float *q = malloc(NTOK * HEADS * HD * sizeof(float)), *o8 = malloc(NTOK * HEADS * HD * sizeof(float)),
          *of = malloc(NTOK * HEADS * HD * sizeof(float));
    assert_true(q && o8 && of);
    for (int i = 0; i < NTOK * HEADS * HD; i++)
        q[i] = 2.0f * urand() - 1.0f;
    int32_t bt[3] = {blocks[0], blocks[1], blocks[2]};
    ss_attn_meta meta = {tok_seq, tok_pos, bt, &seq_len, 1, 3, NTOK, BS, NULL, 0, 0, 0, 0, 0};
    assert_int_equal(b8->iface->attention(b8->ctx, o8, q, HEADS * HD, c8k, c8v, &meta, NTOK, HEADS, KV, HD, 0.2f),
                     SS_OK);
    assert_int_equal(bf->iface->attention(bf->ctx, of, q, HEADS * HD, cfk, cfv, &meta, NTOK, HEADS, KV, HD, 0.2f),
                     SS_OK);
    for (int i = 0; i < NTOK * HEADS * HD; i++)
        if (fabsf(o8[i] - of[i]) > 1e-6f * (1.0f + fabsf(of[i])))
            fail_msg("attention output %d: %g over fp8 blocks, %g over the decoded rows", i, o8[i], of[i]);
    free(k), free(c8k), free(c8v), free(cfk), free(cfv), free(q), free(o8), free(of);
    ss_backend_destroy(b8);
    ss_backend_destroy(bf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_decode),
        cmocka_unit_test(test_e4m3_encode),
        cmocka_unit_test(test_quant_row),
        cmocka_unit_test(test_block_layout_and_parse),
        cmocka_unit_test(test_cpu_store_and_attention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
