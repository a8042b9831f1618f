/* test_hub.c — Hub client helpers (ids, token masking, cache keys, file filter), an unreachable Hub
 * explained without the token, and the build lock: exclusion, release, takeover of a dead holder and
 * of a silent one. (Transfers against a mock Hub are in tests/engine/test_hub.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "engine/cache.h"
#include "engine/hub.h"
#include "engine/lock.h"

static void test_repo_ids(void **state)
{
    (void)state;
    assert_true(ss_hub_is_repo_id("meta-llama/Llama-3.1-8B-Instruct"));
    assert_true(ss_hub_is_repo_id("Qwen/Qwen2.5-7B"));
    assert_false(ss_hub_is_repo_id("llama"));
    assert_false(ss_hub_is_repo_id("a/b/c"));
    assert_false(ss_hub_is_repo_id("/abs/path"));
    assert_false(ss_hub_is_repo_id("org/"));
    assert_false(ss_hub_is_repo_id("org/na me"));
    assert_false(ss_hub_is_repo_id("../etc"));
    char key[64];
    ss_err err;
    assert_int_equal(ss_cache_repo_key("meta-llama/Llama-3.1-8B", key, sizeof key, &err), SS_OK);
    assert_string_equal(key, "meta-llama--Llama-3.1-8B");
    assert_int_equal(ss_cache_repo_key("nope", key, sizeof key, &err), SS_ERR_INVALID_ARG);
}

static void test_wanted_files(void **state)
{
    (void)state;
    assert_true(ss_cache_wanted_file("model-00001-of-00004.safetensors"));
    assert_true(ss_cache_wanted_file("model.safetensors.index.json"));
    assert_true(ss_cache_wanted_file("tokenizer.json"));
    assert_true(ss_cache_wanted_file("tokenizer.model"));
    assert_true(ss_cache_wanted_file("generation_config.json"));
    assert_false(ss_cache_wanted_file("pytorch_model.bin"));
    assert_false(ss_cache_wanted_file("original/params.json"));
    assert_false(ss_cache_wanted_file("README.md"));
    assert_false(ss_cache_wanted_file(".gitattributes"));
}

static void test_mask(void **state)
{
    (void)state;
    char msg[128] = "auth hf_secretXYZ failed; again hf_secretXYZ.";
    ss_hub_mask(msg, "hf_secretXYZ");
    assert_null(strstr(msg, "hf_secretXYZ"));
    assert_string_equal(msg, "auth ************ failed; again ************.");
    char same[32] = "nothing here";
    ss_hub_mask(same, NULL);
    ss_hub_mask(same, "");
    assert_string_equal(same, "nothing here");
}

static void test_unreachable(void **state)
{
    (void)state;
    ss_hub_params p = ss_hub_default_params();
    p.endpoint = "http://127.0.0.1:9/";
    p.token = "hf_secretXYZ";
    p.connect_timeout_s = 5;
    ss_hub_repo *r = NULL;
    ss_err err;
    ss_status st = ss_hub_resolve(&p, "org/model", "main", NULL, &r, &err);
    assert_int_equal(st, SS_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(err.msg, "cannot reach the Hub at http://127.0.0.1:9"));
    assert_null(strstr(err.msg, "hf_secretXYZ"));
    assert_int_equal(ss_hub_resolve(&p, "not an id", "main", NULL, &r, &err), SS_ERR_INVALID_ARG);
}

static char tl_dir[64];

static void tl_write(const char *path, const char *text, int age_s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    if (age_s) {
        struct timespec ts[2];
        clock_gettime(CLOCK_REALTIME, &ts[0]);
        ts[0].tv_sec -= age_s;
        ts[1] = ts[0];
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    }
}

static void test_lock(void **state)
{
    (void)state;
    snprintf(tl_dir, sizeof tl_dir, "/tmp/ss-test-lock.XXXXXX");
    assert_non_null(mkdtemp(tl_dir));
    char path[128];
    snprintf(path, sizeof path, "%s/x.lock", tl_dir);
    ss_lock_params p = ss_lock_default_params();
    p.stale_s = 30; /* far above the time between writing a fresh holder's file and looking at it, under any load */
    p.heartbeat_s = 0.05;
    ss_err err;
    ss_lock *a = NULL, *b = NULL;
    char holder[256];
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_non_null(a);
    /* Held by a live process (this one): a second try does not get it. */
    assert_int_equal(ss_lock_try(path, &p, &b, holder, sizeof holder, &err), SS_OK);
    assert_null(b);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(holder, pid));
    /* The heartbeat moves the mtime forward: every 50 ms, but its thread may run late on a loaded machine, so the
     * wait is bounded only against a hang (60 s). */
    struct stat s1, s2;
    assert_int_equal(stat(path, &s1), 0);
    int moved = 0;
    for (int i = 0; i < 6000 && !moved; i++) {
        usleep(10000);
        assert_int_equal(stat(path, &s2), 0);
        moved = s2.st_mtim.tv_sec > s1.st_mtim.tv_sec ||
                (s2.st_mtim.tv_sec == s1.st_mtim.tv_sec && s2.st_mtim.tv_nsec > s1.st_mtim.tv_nsec);
    }
    assert_true(moved);
    ss_lock_release(a);
    assert_int_equal(access(path, F_OK), -1);

    /* A holder on this host whose pid is gone: taken over at once. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    char host[256] = "", text[512];
    gethostname(host, sizeof host - 1);
    snprintf(text, sizeof text, "host=%s\npid=%ld\nstart=1\n", host, (long)child);
    tl_write(path, text, 0);
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_non_null(a);
    ss_lock_release(a);

    /* Another host, heartbeat fresh: not taken; heartbeat older than stale_s: taken. */
    tl_write(path, "host=other-pod\npid=1\nstart=1\n", 1);
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_null(a);
    assert_non_null(strstr(holder, "other-pod"));
    tl_write(path, "host=other-pod\npid=1\nstart=1\n", 60);
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_non_null(a);
    ss_lock_release(a);

    /* A holder alive on this host (this process) whose heartbeat is late: not taken at 2x the limit (helper-79: live
     * builders were taken over and their work removed), taken past 10x (its pid may be another process's by then). */
    char alive[512];
    snprintf(alive, sizeof alive, "host=%s\npid=%ld\nstart=1\n", host, (long)getpid());
    tl_write(path, alive, 60);
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_null(a);
    tl_write(path, alive, 400);
    assert_int_equal(ss_lock_try(path, &p, &a, holder, sizeof holder, &err), SS_OK);
    assert_non_null(a);
    ss_lock_release(a);

    /* Waiting: ends when the work is done elsewhere, or times out naming the holder. */
    tl_write(path, "host=other-pod\npid=1\nstart=1\n", 0);
    p.poll_s = 0.02;
    p.timeout_s = 0.2;
    assert_int_equal(ss_lock_acquire(path, &p, NULL, NULL, &a, &err), SS_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "other-pod"));
    ss_err e2;
    assert_int_equal(ss_cache_rmtree(tl_dir, &e2), SS_OK);
}

int main(void)
{
    ss_log_init(SS_LOG_ERROR, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repo_ids),
        cmocka_unit_test(test_wanted_files),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
