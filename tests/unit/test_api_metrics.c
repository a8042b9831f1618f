/* test_api_metrics.c — the Prometheus exposition: exact sample lines after known observations, label
 * escaping, and a checker of the text format 0.0.4 rules (HELP/TYPE before samples, cumulative buckets,
 * +Inf bucket == _count, valid metric names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/metrics.h"

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

/* Checks the format; returns the number of samples. */
static int check_format(const char *text)
{
    char typed[64][96];
    char types[64][16];
    int n_typed = 0, samples = 0;
    double last_bucket = -1;
    char hist[96] = "";
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end); /* every line ends with \n */
        size_t len = (size_t)(end - line);
        assert_true(len > 0);
        if (!strncmp(line, "# HELP ", 7)) {
            /* nothing else to check */
        } else if (!strncmp(line, "# TYPE ", 7)) {
            const char *name = line + 7;
            const char *sp = memchr(name, ' ', (size_t)(end - name));
            assert_non_null(sp);
            assert_true(valid_name(name, (size_t)(sp - name)));
            assert_true(n_typed < 64);
            snprintf(typed[n_typed], sizeof typed[0], "%.*s", (int)(sp - name), name);
            snprintf(types[n_typed], sizeof types[0], "%.*s", (int)(end - sp - 1), sp + 1);
            assert_true(!strcmp(types[n_typed], "counter") || !strcmp(types[n_typed], "gauge") ||
                        !strcmp(types[n_typed], "histogram"));
            n_typed++;
        } else {
            assert_true(line[0] != '#');
            size_t nl = strcspn(line, "{ ");
            assert_true(valid_name(line, nl));
            assert_true(n_typed > 0);
            const char *fam = typed[n_typed - 1];
            size_t fl = strlen(fam);
            int is_hist = !strcmp(types[n_typed - 1], "histogram");
            if (is_hist) {
                assert_true(nl > fl && !strncmp(line, fam, fl));
                assert_true(!strncmp(line + fl, "_bucket", 7) || !strncmp(line + fl, "_sum", 4) ||
                            !strncmp(line + fl, "_count", 6));
            } else {
                assert_true(nl == fl && !strncmp(line, fam, fl)); /* sample belongs to the last TYPE */
            }
            const char *val = line + nl;
            if (*val == '{') {
                const char *close = strstr(val, "} ");
                assert_non_null(close);
                assert_true(close < end);
                val = close + 1;
            }
            assert_true(*val == ' ');
            char *stop = NULL;
            double v = strtod(val + 1, &stop);
            assert_true(stop == end);
            if (is_hist && !strncmp(line + fl, "_bucket", 7)) {
                if (strcmp(hist, fam) != 0) {
                    snprintf(hist, sizeof hist, "%s", fam);
                    last_bucket = -1;
                }
                assert_true(v >= last_bucket); /* cumulative */
                last_bucket = v;
            }
            if (is_hist && !strncmp(line + fl, "_count", 6))
                assert_true(v == last_bucket); /* +Inf bucket equals the count */
            samples++;
        }
        line = end + 1;
    }
    return samples;
}

static void test_render(void **state)
{
    (void)state;
    ss_metrics *m = NULL;
    assert_int_equal(ss_metrics_create("tiny", &m), SS_OK);
    ss_metrics_request r = {.queue_us = 1000, .ttft_us = 30000, .e2e_us = 500000};
    ss_metrics_request_ok(m, &r);
    ss_metrics_request_ok(m, &r);
    ss_metrics_request_failed(m, SS_METRICS_FAIL_REJECTED, NULL);
    ss_metrics_request_failed(m, SS_METRICS_FAIL_CANCELED, &r);
    ss_metrics_observe_itl(m, 0.004);
    ss_metrics_observe_itl(m, 3.0);
    ss_metrics_set_load_seconds(m, 2.5);
    ss_metrics_set_tokenizing(m, 4);
    ss_sched_stats st;
    memset(&st, 0, sizeof st);
    st.running = 3;
    st.waiting = 2;
    st.kv_blocks_total = 100;
    st.kv_blocks_used = 25;
    st.steps = 77;
    st.prompt_tokens = 1234;
    st.generated_tokens = 99;
    st.step_seconds_total = 1.5;
    st.steps_ahead = 70;
    st.steps_paced = 61;
    st.steps_paced_late = 2;
    st.spec_draft_tokens = 40;
    st.spec_accepted_tokens = 31;
    size_t len = 0;
    char *t = ss_metrics_render(m, &st, &len);
    assert_non_null(t);
    assert_int_equal(len, strlen(t));
    static const char *const want[] = {
        "# TYPE nv_inference_request_success counter\n",
        "nv_inference_request_success{model=\"tiny\",version=\"1\"} 2\n",
        "nv_inference_request_failure{model=\"tiny\",version=\"1\",reason=\"REJECTED\"} 1\n",
        "nv_inference_request_failure{model=\"tiny\",version=\"1\",reason=\"CANCELED\"} 1\n",
        "nv_inference_request_failure{model=\"tiny\",version=\"1\",reason=\"BACKEND\"} 0\n",
        "nv_inference_count{model=\"tiny\",version=\"1\"} 3\n",
        "nv_inference_exec_count{model=\"tiny\",version=\"1\"} 77\n",
        "nv_inference_request_duration_us{model=\"tiny\",version=\"1\"} 1500000\n",
        "nv_inference_queue_duration_us{model=\"tiny\",version=\"1\"} 3000\n",
        "nv_inference_compute_infer_duration_us{model=\"tiny\",version=\"1\"} 1497000\n",
        "nv_inference_pending_request_count{model=\"tiny\",version=\"1\"} 2\n",
        "# TYPE vllm:num_requests_waiting gauge\n",
        "vllm:num_requests_waiting{model_name=\"tiny\"} 2\n",
        "vllm:kv_cache_usage_perc{model_name=\"tiny\"} 0.25\n",
        "# TYPE shardserve_time_to_first_token_seconds histogram\n",
        "shardserve_time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.02\"} 0\n",
        "shardserve_time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.04\"} 3\n",
        "shardserve_time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"+Inf\"} 3\n",
        "shardserve_time_to_first_token_seconds_count{model_name=\"tiny\"} 3\n",
        "shardserve_inter_token_latency_seconds_bucket{model_name=\"tiny\",le=\"0.005\"} 1\n",
        "shardserve_inter_token_latency_seconds_bucket{model_name=\"tiny\",le=\"2.5\"} 1\n",
        "shardserve_inter_token_latency_seconds_bucket{model_name=\"tiny\",le=\"+Inf\"} 2\n",
        "shardserve_inter_token_latency_seconds_sum{model_name=\"tiny\"} 3.004\n",
        "shardserve_e2e_request_latency_seconds_sum{model_name=\"tiny\"} 1.5\n",
        "shardserve_requests_running{model_name=\"tiny\"} 3\n",
        "# TYPE shardserve_requests_tokenizing gauge\n",
        "shardserve_requests_tokenizing{model_name=\"tiny\"} 4\n",
        "shardserve_kv_blocks_used{model_name=\"tiny\"} 25\n",
        "shardserve_kv_blocks_free{model_name=\"tiny\"} 75\n",
        "shardserve_prompt_tokens_total{model_name=\"tiny\"} 1234\n",
        "shardserve_generation_tokens_total{model_name=\"tiny\"} 99\n",
        "shardserve_step_seconds_total{model_name=\"tiny\"} 1.5\n",
        "# TYPE shardserve_steps_planned_ahead_total counter\n",
        "shardserve_steps_planned_ahead_total{model_name=\"tiny\"} 70\n",
        "# TYPE shardserve_steps_paced_total counter\n",
        "shardserve_steps_paced_total{model_name=\"tiny\"} 61\n",
        "shardserve_steps_paced_late_total{model_name=\"tiny\"} 2\n",
        "# TYPE shardserve_spec_draft_tokens_total counter\n",
        "shardserve_spec_draft_tokens_total{model_name=\"tiny\"} 40\n",
        "# TYPE shardserve_spec_accepted_tokens_total counter\n",
        "shardserve_spec_accepted_tokens_total{model_name=\"tiny\"} 31\n",
        "shardserve_comm_seconds_total{model_name=\"tiny\"} 0\n",
        "shardserve_load_seconds{model_name=\"tiny\"} 2.5\n",
        "# TYPE shardserve_preemptions_total counter\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(t, want[i]))
            print_error("missing: %s", want[i]);
        assert_non_null(strstr(t, want[i]));
    }
    assert_true(check_format(t) > 60);
    ss_free(t);
    /* Without a scheduler (still loading): gauges read 0, the format holds. */
    t = ss_metrics_render(m, NULL, &len);
    assert_non_null(strstr(t, "vllm:kv_cache_usage_perc{model_name=\"tiny\"} 0\n"));
    check_format(t);
    ss_free(t);
    ss_metrics_destroy(m);
}

static void test_label_escaping(void **state)
{
    (void)state;
    ss_metrics *m = NULL;
    assert_int_equal(ss_metrics_create("a\"b\\c\nd", &m), SS_OK);
    size_t len;
    char *t = ss_metrics_render(m, NULL, &len);
    assert_non_null(strstr(t, "vllm:num_requests_waiting{model_name=\"a\\\"b\\\\c\\nd\"} 0\n"));
    check_format(t);
    ss_free(t);
    ss_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_label_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
