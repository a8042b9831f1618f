/* test_core.c — status messages, error buffers, dtype conversions, the allocator hook, flag parsing, JSON integers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cli/opts.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/json_num.h"
#include "core/status.h"

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = 0; s < SS_STATUS_COUNT; s++)
        assert_non_null(ss_status_str((ss_status)s));
    assert_string_equal(ss_status_str(SS_ERR_NOMEM), "out of memory");
    assert_int_equal(ss_status_exit_code(SS_ERR_FORMAT), 3);
    assert_int_equal(ss_status_exit_code(SS_ERR_COMM), 4);
    assert_int_equal(ss_status_exit_code(SS_ERR_NOMEM), 5);
    ss_err e;
    assert_int_equal(ss_err_set(&e, SS_ERR_IO, "open %s", "x.bin"), SS_ERR_IO);
    ss_err_prefix(&e, "model %d", 3);
    assert_string_equal(e.msg, "model 3: open x.bin");
}

static void test_bf16_roundtrip(void **state)
{
    (void)state;
    assert_int_equal(ss_f32_to_bf16(1.0f), 0x3f80);
    assert_true(ss_bf16_to_f32(0x3f80) == 1.0f);
    /* round to nearest even: 1 + 2^-8 is a tie between 1 and 1+2^-7 -> 1 */
    assert_int_equal(ss_f32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(ss_f32_to_bf16(1.01171875f), 0x3f82);
    assert_true(ss_f16_to_f32(ss_f32_to_f16(0.333251953125f)) == 0.333251953125f);
    assert_true(ss_f16_to_f32(0x3c00) == 1.0f);
    assert_true(ss_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    assert_int_equal(ss_f32_to_f16(70000.0f), 0x7c00);
}

static void test_alloc_fault_injection(void **state)
{
    (void)state;
    ss_alloc_fail_after(2);
    void *a = ss_malloc(8), *b = ss_malloc(8), *c = ss_malloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_int_equal(ss_alloc_fail_after(-1), 1);
    c = ss_malloc(8);
    assert_non_null(c);
    ss_free(a);
    ss_free(b);
    ss_free(c);
}

static void test_opts(void **state)
{
    (void)state;
    int64_t tp = 1, port = 8000;
    const char *model = NULL;
    double temp = 1.0;
    int verbose = 0;
    ss_opt opts[] = {{"tp", SS_OPT_INT, &tp, "tensor parallel"},
                     {"port", SS_OPT_INT, &port, "port"},
                     {"model", SS_OPT_STR, &model, "model"},
                     {"temperature", SS_OPT_FLOAT, &temp, "t"},
                     {"verbose", SS_OPT_BOOL, &verbose, "v"},
                     {NULL, 0, NULL, NULL}};
    char *argv[] = {"shardserve", "serve", "--tp", "4", "--model=/m", "--verbose", NULL};
    char *env[] = {"SHARDSERVE_TP=2", "SHARDSERVE_PORT=9000", "SHARDSERVE_TEMPERATURE=0.5", NULL};
    ss_err e;
    assert_int_equal(ss_opts_parse(opts, 6, argv, 2, env, "serve", &e), SS_OK);
    assert_int_equal(tp, 4); /* flag beats env */
    assert_int_equal(port, 9000);
    assert_string_equal(model, "/m");
    assert_true(temp == 0.5);
    assert_int_equal(verbose, 1);
    char *bad[] = {"shardserve", "serve", "--tpp", "4", NULL};
    assert_int_equal(ss_opts_parse(opts, 4, bad, 2, NULL, "serve", &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "--tpp"));
    char *badnum[] = {"shardserve", "serve", "--tp", "four", NULL};
    assert_int_equal(ss_opts_parse(opts, 4, badnum, 2, NULL, "serve", &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "four"));
    char *missing[] = {"shardserve", "serve", "--tp", NULL};
    assert_int_equal(ss_opts_parse(opts, 3, missing, 2, NULL, "serve", &e), SS_ERR_INVALID_ARG);
    /* a flag wins over a twin whose value is bad (helper-80: the twin was read first and failed the command); the
     * bad twin of an option no flag gives is still refused, naming the variable */
    char *flag_given[] = {"shardserve", "serve", "--tp", "3", NULL};
    char *bad_env[] = {"SHARDSERVE_TP=abc", NULL};
    assert_int_equal(ss_opts_parse(opts, 4, flag_given, 2, bad_env, "serve", &e), SS_OK);
    assert_int_equal(tp, 3);
    char *no_flag[] = {"shardserve", "serve", NULL};
    assert_int_equal(ss_opts_parse(opts, 2, no_flag, 2, bad_env, "serve", &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "SHARDSERVE_TP"));

    /* a later range error names the variable where the value came from the environment, not from a flag */
    const ss_opts_src src = {opts, 6, argv, 2, env};
    snprintf(e.msg, sizeof e.msg, "--port must be in [0, 65535] (got 9000)");
    ss_opts_explain(&src, &e);
    assert_string_equal(e.msg, "--port must be in [0, 65535] (got 9000) (from the environment: SHARDSERVE_PORT=9000)");
    snprintf(e.msg, sizeof e.msg, "--tp must be 1"); /* from the flag (which beat SHARDSERVE_TP=2): nothing added */
    ss_opts_explain(&src, &e);
    assert_string_equal(e.msg, "--tp must be 1");
    snprintf(e.msg, sizeof e.msg, "--temperature-x, --portal and --porta"); /* only whole names */
    ss_opts_explain(&src, &e);
    assert_string_equal(e.msg, "--temperature-x, --portal and --porta");
    snprintf(e.msg, sizeof e.msg, "--temperature and --port: bad"); /* two of them */
    ss_opts_explain(&src, &e);
    assert_string_equal(e.msg, "--temperature and --port: bad (from the environment: SHARDSERVE_PORT=9000) (from the "
                               "environment: SHARDSERVE_TEMPERATURE=0.5)");
    /* a flag's value that looks like a flag ("--model --port") is the value, not the flag */
    char *val_flag[] = {"shardserve", "serve", "--model", "--port", NULL};
    const ss_opts_src src2 = {opts, 4, val_flag, 2, env};
    snprintf(e.msg, sizeof e.msg, "--port bad");
    ss_opts_explain(&src2, &e);
    assert_non_null(strstr(e.msg, "SHARDSERVE_PORT=9000"));
    /* a long value is cut; the message never overflows */
    char longv[2200] = "SHARDSERVE_PORT=";
    memset(longv + 16, '7', 2100);
    longv[2116] = '\0';
    char *env_long[] = {longv, NULL};
    const ss_opts_src src3 = {opts, 2, no_flag, 2, env_long};
    memset(e.msg, 'x', sizeof e.msg - 1);
    memcpy(e.msg, "--port ", 7);
    e.msg[sizeof e.msg - 1] = '\0';
    ss_opts_explain(&src3, &e);
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
    snprintf(e.msg, sizeof e.msg, "--port bad");
    ss_opts_explain(&src3, &e);
    assert_non_null(strstr(e.msg, "=777777777777777777777777777777777777777777777777777777777777...)"));
}

/* JSON numbers as integers: in range and whole, or refused before any conversion (out of range is undefined). */
static void test_json_int(void **state)
{
    (void)state;
    cJSON *a = cJSON_Parse("[5, -7, 5.5, 1e300, -1e300, 1e400, 9007199254740992, 2147483647, 2147483648, \"5\", null]");
    assert_non_null(a);
    int64_t v = 42;
    int32_t w = 42;
    assert_true(ss_json_int(cJSON_GetArrayItem(a, 0), 0, 10, &v) && v == 5);
    assert_true(ss_json_int(cJSON_GetArrayItem(a, 1), -10, 10, &v) && v == -7);
    assert_false(ss_json_int(cJSON_GetArrayItem(a, 1), 0, 10, &v)); /* below lo */
    assert_false(ss_json_int(cJSON_GetArrayItem(a, 0), 0, 4, &v));  /* above hi */
    v = 42;
    for (int i = 2; i <= 5; i++) /* 5.5, ±1e300, an infinity */
        assert_false(ss_json_int(cJSON_GetArrayItem(a, i), INT64_MIN, INT64_MAX, &v));
    assert_false(ss_json_int(cJSON_GetArrayItem(a, 9), 0, 10, &v));  /* a string */
    assert_false(ss_json_int(cJSON_GetArrayItem(a, 10), 0, 10, &v)); /* null */
    assert_false(ss_json_int(NULL, 0, 10, &v));
    assert_int_equal(v, 42); /* untouched when refused */
    assert_true(ss_json_int(cJSON_GetArrayItem(a, 6), 0, INT64_C(1) << 53, &v) && v == INT64_C(1) << 53);
    assert_true(ss_json_i32(cJSON_GetArrayItem(a, 7), 0, INT32_MAX, &w) && w == INT32_MAX);
    assert_false(ss_json_i32(cJSON_GetArrayItem(a, 8), 0, INT32_MAX, &w));
    assert_int_equal(w, INT32_MAX);
    cJSON_Delete(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_bf16_roundtrip),
        cmocka_unit_test(test_alloc_fault_injection),
        cmocka_unit_test(test_opts),
        cmocka_unit_test(test_json_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
