/* test_engine_manifest.c — manifest.json round trip and every class of parse error (each naming the
 * manifest and the field), dtype names, loading from a folder, allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "engine/cache.h"
#include "engine/manifest.h"

static const char tm_good[] =
    "{\"format_version\":1,\"format\":\"shardserve-engine\",\"tool_version\":\"0.1.0\","
    "\"source\":{\"id\":\"org/m\",\"revision\":\"abc123\",\"files\":[{\"name\":\"model.safetensors\",\"size\":100,"
    "\"digest\":\"sha256:00\"}]},"
    "\"model\":{\"architecture\":\"LlamaForCausalLM\",\"vocab_size\":512,\"hidden_size\":128,\"intermediate_size\":352,"
    "\"num_layers\":4,\"num_heads\":8,\"num_kv_heads\":2,\"head_dim\":16,\"tie_embeddings\":false},"
    "\"tp\":2,\"pp\":1,\"dtype\":\"bf16\","
    "\"ranks\":[{\"name\":\"rank-00000.safetensors\",\"size\":10,\"digest\":\"sha256:aa\","
    "\"quick_digest\":\"xxh3-128:99aa06d3014798d86001c324468d497f\"},"
    "{\"name\":\"rank-00001.safetensors\",\"size\":11,"
    "\"quick_digest\":\"xxh3-128:06b05ab6733a618578af5f94892f3950\"}],"
    "\"files\":[{\"name\":\"config.json\",\"size\":5}]}";

/* tm_good with the first occurrence of `from` replaced by `to`. */
static char *tm_variant(const char *from, const char *to)
{
    const char *p = strstr(tm_good, from);
    assert_non_null(p);
    size_t n = strlen(tm_good) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(p - tm_good), tm_good, to, p + strlen(from));
    return s;
}

static void tm_expect(const char *from, const char *to, ss_status want, const char *msg_part)
{
    char *s = tm_variant(from, to);
    ss_manifest *m = NULL;
    ss_err err = {{0}};
    ss_status st = ss_manifest_parse(s, strlen(s), "x/manifest.json", &m, &err);
    if (st != want || !strstr(err.msg, msg_part) || !strstr(err.msg, "x/manifest.json"))
        fail_msg("replacing '%s' by '%s': status %d, message '%s' (wanted %d with '%s')", from, to, st, err.msg, want,
                 msg_part);
    assert_null(m);
    free(s);
}

static void test_parse_good_and_roundtrip(void **state)
{
    (void)state;
    ss_manifest *m = NULL;
    ss_err err;
    assert_int_equal(ss_manifest_parse(tm_good, strlen(tm_good), "m", &m, &err), SS_OK);
    assert_string_equal(m->source_id, "org/m");
    assert_string_equal(m->source_revision, "abc123");
    assert_int_equal(m->n_source_files, 1);
    assert_int_equal(m->source_files[0].size, 100);
    assert_int_equal(m->tp, 2);
    assert_int_equal(m->pp, 1);
    assert_int_equal(m->dtype, SS_DTYPE_BF16);
    assert_int_equal(m->n_ranks, 2);
    assert_string_equal(m->ranks[1].name, "rank-00001.safetensors");
    assert_null(m->ranks[1].digest);
    assert_string_equal(m->ranks[0].digest, "sha256:aa");
    assert_string_equal(m->ranks[0].quick_digest, "xxh3-128:99aa06d3014798d86001c324468d497f");
    assert_string_equal(m->ranks[1].quick_digest, "xxh3-128:06b05ab6733a618578af5f94892f3950");
    assert_int_equal(m->model.n_kv_heads, 2);
    assert_string_equal(m->model.arch, "LlamaForCausalLM");
    assert_int_equal(m->n_extras, 1);
    char *text = NULL;
    assert_int_equal(ss_manifest_to_json(m, &text, &err), SS_OK);
    ss_manifest *m2 = NULL;
    assert_int_equal(ss_manifest_parse(text, strlen(text), "m2", &m2, &err), SS_OK);
    assert_string_equal(m2->source_id, m->source_id);
    assert_int_equal(m2->ranks[1].size, 11);
    assert_string_equal(m2->ranks[0].quick_digest, m->ranks[0].quick_digest);
    assert_string_equal(m2->ranks[1].quick_digest, m->ranks[1].quick_digest);
    assert_int_equal(m2->model.head_dim, 16);
    assert_int_equal(m2->model.tie_embeddings, 0);
    char *text2 = NULL;
    assert_int_equal(ss_manifest_to_json(m2, &text2, &err), SS_OK);
    assert_string_equal(text, text2);
    ss_free(text);
    ss_free(text2);
    ss_manifest_destroy(m);
    ss_manifest_destroy(m2);
}

static void test_parse_errors(void **state)
{
    (void)state;
    ss_manifest *m = NULL;
    ss_err err;
    assert_int_equal(ss_manifest_parse("{nope", 5, "x/manifest.json", &m, &err), SS_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_int_equal(ss_manifest_parse("[1]", 3, "x/manifest.json", &m, &err), SS_ERR_FORMAT);
    tm_expect("\"format_version\":1", "\"format_version\":2", SS_ERR_UNSUPPORTED, "format_version 2");
    tm_expect("\"format_version\":1,", "", SS_ERR_FORMAT, "format_version");
    tm_expect("\"tool_version\":\"0.1.0\"", "\"tool_version\":7", SS_ERR_FORMAT, "tool_version");
    tm_expect("\"tp\":2", "\"tp\":0", SS_ERR_FORMAT, "\"tp\"");
    tm_expect("\"tp\":2", "\"tp\":1.5", SS_ERR_FORMAT, "\"tp\"");
    tm_expect("\"pp\":1", "\"pp\":2", SS_ERR_FORMAT, "2 rank files for tp 2 x pp 2");
    tm_expect("\"dtype\":\"bf16\"", "\"dtype\":\"int8\"", SS_ERR_FORMAT, "int8");
    tm_expect("rank-00001.safetensors", "../evil", SS_ERR_FORMAT, "bad file name");
    tm_expect("\"size\":11", "\"size\":-1", SS_ERR_FORMAT, "\"size\"");
    tm_expect("xxh3-128:99aa", "xxh3-64:99aa", SS_ERR_FORMAT, "quick_digest");
    tm_expect("d497f\"", "d497\"", SS_ERR_FORMAT, "32 lowercase hex digits");
    tm_expect("xxh3-128:99aa", "xxh3-128:99AA", SS_ERR_FORMAT, "quick_digest");
    tm_expect("\"quick_digest\":\"", "\"quick_digest\":7,\"x\":\"", SS_ERR_FORMAT, "must be a string");
    tm_expect(",\"quick_digest\":\"xxh3-128:06b05ab6733a618578af5f94892f3950\"", "", SS_ERR_FORMAT,
              "\"quick_digest\" is given for 1 of the 2 rank files (every one or none)");
    tm_expect("\"quick_digest\":\"xxh3-128:06b05ab6733a618578af5f94892f3950\"", "\"quick_digest\":null",
              SS_ERR_FORMAT, "1 of the 2");
    tm_expect("\"size\":11", "\"size\":\"11\"", SS_ERR_FORMAT, "\"size\"");
    tm_expect("\"num_heads\":8", "\"num_heads\":0", SS_ERR_FORMAT, "num_heads");
    tm_expect("\"tie_embeddings\":false", "\"tie_embeddings\":0", SS_ERR_FORMAT, "tie_embeddings");
    tm_expect("\"source\":{", "\"origin\":{", SS_ERR_FORMAT, "\"source\"");
    tm_expect("\"ranks\":[", "\"ranks\":{\"a\":[", SS_ERR_FORMAT, "JSON");
    tm_expect("\"files\":[{\"name\":\"config.json\"", "\"files\":[{\"nom\":\"config.json\"", SS_ERR_FORMAT, "\"name\"");
}

static void test_dtype_names(void **state)
{
    (void)state;
    ss_dtype t;
    ss_err err;
    assert_int_equal(ss_engine_dtype_parse("bf16", &t, &err), SS_OK);
    assert_int_equal(t, SS_DTYPE_BF16);
    assert_int_equal(ss_engine_dtype_parse("fp16", &t, &err), SS_OK);
    assert_int_equal(t, SS_DTYPE_F16);
    assert_int_equal(ss_engine_dtype_parse("float32", &t, &err), SS_OK);
    assert_int_equal(t, SS_DTYPE_F32);
    assert_int_equal(ss_engine_dtype_parse("int4", &t, &err), SS_ERR_INVALID_ARG);
    assert_string_equal(ss_engine_dtype_name(SS_DTYPE_F16), "fp16");
    assert_true(ss_manifest_name_ok("rank-00000.safetensors"));
    assert_false(ss_manifest_name_ok(".."));
    assert_false(ss_manifest_name_ok("a/b"));
    assert_false(ss_manifest_name_ok(""));
}

static void test_load_save(void **state)
{
    (void)state;
    char dir[] = "/tmp/ss-test-man.XXXXXX";
    assert_non_null(mkdtemp(dir));
    ss_manifest *m = NULL;
    ss_err err;
    assert_int_equal(ss_manifest_load(dir, &m, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "manifest.json"));
    assert_int_equal(ss_manifest_parse(tm_good, strlen(tm_good), "m", &m, &err), SS_OK);
    assert_int_equal(ss_manifest_save(m, dir, &err), SS_OK);
    ss_manifest *m2 = NULL;
    assert_int_equal(ss_manifest_load(dir, &m2, &err), SS_OK);
    assert_int_equal(m2->n_ranks, 2);
    ss_manifest_destroy(m);
    ss_manifest_destroy(m2);
    assert_int_equal(ss_cache_rmtree(dir, &err), SS_OK);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    int ok = 0;
    for (long n = 0; n < 400 && !ok; n++) {
        ss_manifest *m = NULL;
        ss_err err;
        ss_alloc_fail_after(n);
        ss_status st = ss_manifest_parse(tm_good, strlen(tm_good), "m", &m, &err);
        ss_alloc_fail_after(-1);
        if (st == SS_OK) {
            ok = 1;
            ss_manifest_destroy(m);
        } else {
            assert_null(m);
        }
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good_and_roundtrip),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_load_save),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
