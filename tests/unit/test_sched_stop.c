/* test_sched_stop.c — the scheduler's stop-string matcher: stops spanning pieces, several stops,
 * partial-match hold-back, and released text that always equals the untouched text up to the stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "serve/stop.h"

/* Feeds pieces, concatenates what is released; returns the stop index (-1 none) and the text. */
static int32_t run(const char *const *stops, int32_t n_stops, const char *const *pieces, int n_pieces, char *outbuf,
                   size_t outcap, size_t *released_after /* [n_pieces] cumulative released length */)
{
    ss_stop *m = NULL;
    ss_err err;
    assert_int_equal(ss_stop_create(stops, n_stops, &m, &err), SS_OK);
    size_t len = 0;
    int32_t which = -1;
    int stopped = 0;
    for (int i = 0; i < n_pieces; i++) {
        const char *out;
        size_t out_len;
        int32_t w;
        assert_int_equal(ss_stop_feed(m, pieces[i], strlen(pieces[i]), 1, &out, &out_len, &stopped, &w, &err), SS_OK);
        assert_true(len + out_len < outcap);
        memcpy(outbuf + len, out, out_len);
        len += out_len;
        if (released_after)
            released_after[i] = len;
        if (stopped && which < 0)
            which = w;
        else
            assert_int_equal(w, -1);
    }
    if (!stopped) {
        const char *out;
        size_t out_len;
        ss_stop_flush(m, &out, &out_len);
        memcpy(outbuf + len, out, out_len);
        len += out_len;
    }
    outbuf[len] = '\0';
    ss_stop_destroy(m);
    return which;
}

static void test_spanning_tokens(void **state)
{
    (void)state;
    const char *stops[] = {"###"};
    const char *pieces[] = {"Hello #", "#", "# world"};
    char out[256];
    size_t rel[3];
    assert_int_equal(run(stops, 1, pieces, 3, out, sizeof(out), rel), 0);
    assert_string_equal(out, "Hello ");
    assert_int_equal(rel[0], 6); /* "#" held back */
    assert_int_equal(rel[1], 6); /* "##" held back */
    assert_int_equal(rel[2], 6);
}

static void test_partial_then_mismatch_released(void **state)
{
    (void)state;
    const char *stops[] = {"</end>"};
    const char *pieces[] = {"a </e", "nx> b", " c"};
    char out[256];
    size_t rel[3];
    assert_int_equal(run(stops, 1, pieces, 3, out, sizeof(out), rel), -1);
    assert_string_equal(out, "a </enx> b c");
    assert_int_equal(rel[0], 2);
    assert_int_equal(rel[1], 10);
    assert_int_equal(rel[2], 12);
}

static void test_multiple_stops_first_completed(void **state)
{
    (void)state;
    const char *stops[] = {"STOP", "\n\n", "xyz"};
    const char *pieces[] = {"line one\n", "\nline two STOP"};
    char out[256];
    assert_int_equal(run(stops, 3, pieces, 2, out, sizeof(out), NULL), 1);
    assert_string_equal(out, "line one");
    const char *pieces2[] = {"abc ST", "OP and \n\n"};
    assert_int_equal(run(stops, 3, pieces2, 2, out, sizeof(out), NULL), 0);
    assert_string_equal(out, "abc ");
    /* the stop at the very start: nothing released */
    const char *pieces3[] = {"xy", "z..."};
    assert_int_equal(run(stops, 3, pieces3, 2, out, sizeof(out), NULL), 2);
    assert_string_equal(out, "");
}

static void test_overlapping_prefixes(void **state)
{
    (void)state;
    /* KMP fallback: "aab" inside "aaab", and a stop that is a suffix of another */
    const char *stops[] = {"aab"};
    const char *pieces[] = {"a", "a", "a", "b!"};
    char out[64];
    size_t rel[4];
    assert_int_equal(run(stops, 1, pieces, 4, out, sizeof(out), rel), 0);
    assert_string_equal(out, "a");
    assert_int_equal(rel[0], 0);
    assert_int_equal(rel[1], 0);
    assert_int_equal(rel[2], 1);
    const char *stops2[] = {"bc", "abcd"};
    const char *pieces2[] = {"xabcd"};
    assert_int_equal(run(stops2, 2, pieces2, 1, out, sizeof(out), NULL), 0); /* "bc" completes first */
    assert_string_equal(out, "xa");
    const char *stops3[] = {"c", "abc"};
    const char *pieces3[] = {"xab", "c"};
    assert_int_equal(run(stops3, 2, pieces3, 2, out, sizeof(out), NULL), 1); /* same end: the longer cut */
    assert_string_equal(out, "x");
}

static void test_after_stop_nothing(void **state)
{
    (void)state;
    ss_stop *m = NULL;
    ss_err err;
    const char *stops[] = {"!"};
    assert_int_equal(ss_stop_create(stops, 1, &m, &err), SS_OK);
    const char *out;
    size_t n;
    int stopped;
    int32_t w;
    assert_int_equal(ss_stop_feed(m, "hi!there", 8, 1, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(stopped, 1);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(ss_stop_feed(m, "more", 4, 1, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(stopped, 1);
    assert_int_equal(n, 0);
    ss_stop_flush(m, &out, &n);
    assert_int_equal(n, 0);
    ss_stop_destroy(m);
}

static void test_match_off_releases_all(void **state)
{
    (void)state;
    ss_stop *m = NULL;
    ss_err err;
    const char *stops[] = {"END"};
    assert_int_equal(ss_stop_create(stops, 1, &m, &err), SS_OK);
    const char *out;
    size_t n;
    int stopped;
    int32_t w;
    assert_int_equal(ss_stop_feed(m, "xEN", 3, 1, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(n, 1);
    /* min_tokens not reached: no matching, the held "EN" and the new text go out */
    assert_int_equal(ss_stop_feed(m, "D", 1, 0, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(stopped, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "END", 3);
    assert_int_equal(ss_stop_feed(m, "END", 3, 1, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(stopped, 1);
    assert_int_equal(n, 0);
    ss_stop_destroy(m);
}

static void test_bad_stops(void **state)
{
    (void)state;
    ss_stop *m = NULL;
    ss_err err;
    const char *empty[] = {"ok", ""};
    assert_int_equal(ss_stop_create(empty, 2, &m, &err), SS_ERR_INVALID_ARG);
    assert_null(m);
    assert_non_null(strstr(err.msg, "stop string 1"));
    char big[SS_STOP_MAX_LEN + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *bigs[] = {big};
    assert_int_equal(ss_stop_create(bigs, 1, &m, &err), SS_ERR_INVALID_ARG);
    /* no stops: everything released at once */
    assert_int_equal(ss_stop_create(NULL, 0, &m, &err), SS_OK);
    const char *out;
    size_t n;
    int stopped;
    int32_t w;
    assert_int_equal(ss_stop_feed(m, "abc", 3, 1, &out, &n, &stopped, &w, &err), SS_OK);
    assert_int_equal(n, 3);
    ss_stop_destroy(m);
}

/* Random texts split at random points: the released text equals the text up to the first stop
 * (found by a plain search), whatever the split. */
static void test_random_splits(void **state)
{
    (void)state;
    const char *stops[] = {"abca", "cab", "bb"};
    uint64_t rng = 7;
    for (int iter = 0; iter < 3000; iter++) {
        char text[48];
        int len = 0;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int n = 1 + (int)((rng >> 33) % 40);
        for (int i = 0; i < n; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            text[len++] = "abcd"[(rng >> 40) % 4];
        }
        text[len] = '\0';
        int32_t n_stops = 1 + iter % 3;
        /* expected: the earliest end of any stop, ties to the longest */
        int best_end = -1, best_start = -1, best_k = -1;
        for (int e = 1; e <= len && best_end < 0; e++)
            for (int32_t k = 0; k < n_stops; k++) {
                int sl = (int)strlen(stops[k]);
                if (sl <= e && memcmp(text + e - sl, stops[k], (size_t)sl) == 0 &&
                    (best_start < 0 || e - sl < best_start)) {
                    best_end = e;
                    best_start = e - sl;
                    best_k = k;
                }
            }
        char piece_store[48][48];
        const char *pieces[48];
        int np = 0;
        for (int pos = 0; pos < len;) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int pl = 1 + (int)((rng >> 35) % 5);
            if (pl > len - pos)
                pl = len - pos;
            memcpy(piece_store[np], text + pos, (size_t)pl);
            piece_store[np][pl] = '\0';
            pieces[np] = piece_store[np];
            np++;
            pos += pl;
        }
        char out[64];
        int32_t which = run(stops, n_stops, pieces, np, out, sizeof(out), NULL);
        assert_int_equal(which, best_k);
        if (best_k < 0) {
            assert_string_equal(out, text);
        } else {
            assert_int_equal((int)strlen(out), best_start);
            assert_memory_equal(out, text, (size_t)best_start);
        }
    }
}

static void test_alloc_failure(void **state)
{
    (void)state;
    const char *stops[] = {"abc", "de"};
    for (long n = 0; n < 10; n++) {
        ss_stop *m = NULL;
        ss_err err;
        ss_alloc_fail_after(n);
        ss_status st = ss_stop_create(stops, 2, &m, &err);
        if (st == SS_OK) {
            const char *out;
            size_t len;
            int stopped;
            int32_t w;
            st = ss_stop_feed(m, "xxab", 4, 1, &out, &len, &stopped, &w, &err);
            assert_true(st == SS_OK || st == SS_ERR_NOMEM);
            ss_stop_destroy(m);
        } else {
            assert_int_equal(st, SS_ERR_NOMEM);
        }
        ss_alloc_fail_after(-1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spanning_tokens),
        cmocka_unit_test(test_partial_then_mismatch_released),
        cmocka_unit_test(test_multiple_stops_first_completed),
        cmocka_unit_test(test_overlapping_prefixes),
        cmocka_unit_test(test_after_stop_nothing),
        cmocka_unit_test(test_match_off_releases_all),
        cmocka_unit_test(test_bad_stops),
        cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
