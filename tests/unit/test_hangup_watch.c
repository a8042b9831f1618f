/* test_hangup_watch.c — the hang-up watcher: it reports the first socket whose peer closed or shut down,
 * ignores (and never consumes) data, stays silent until stopped otherwise, and refuses bad arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "runner/hangup_watch.h"

/* The callback's record: how often it ran, with which index, and a pipe the test blocks on. */
typedef struct hw_probe {
    int calls, index;
    int note[2];
} hw_probe;

static void hw_on_hangup(void *ctx, int index)
{
    hw_probe *p = ctx;
    p->calls++;
    p->index = index;
    char c = 1;
    assert_int_equal(write(p->note[1], &c, 1), 1);
}

static void wait_note(hw_probe *p)
{
    char c;
    assert_int_equal(read(p->note[0], &c, 1), 1); /* blocks until the callback ran (ctest's timeout guards) */
}

/* One socket pair a, its end a[0] watched, the callback recording into p. */
static ss_hangup_watch *watch_one(hw_probe *p, int a[2])
{
    *p = (hw_probe){0, -1, {-1, -1}};
    assert_int_equal(pipe(p->note), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    ss_hangup_watch *w = NULL;
    ss_err e;
    assert_int_equal(ss_hangup_watch_start(&a[0], 1, hw_on_hangup, p, &w, &e), SS_OK);
    return w;
}

static void test_reports_the_closed_socket_not_data(void **state)
{
    (void)state;
    int a[2], b[2];
    hw_probe p = {0, -1, {-1, -1}};
    assert_int_equal(pipe(p.note), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    int fds[2] = {a[0], b[0]};
    ss_hangup_watch *w = NULL;
    ss_err e;
    assert_int_equal(ss_hangup_watch_start(fds, 2, hw_on_hangup, &p, &w, &e), SS_OK);
    assert_int_equal(write(a[1], "xy", 2), 2); /* data on socket 0: no hang-up */
    close(b[1]);                              /* socket 1's peer goes away */
    wait_note(&p);
    assert_int_equal(ss_hangup_watch_stop(w), 1);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.index, 1);
    char buf[4] = {0};
    assert_int_equal(recv(a[0], buf, sizeof buf, MSG_DONTWAIT), 2); /* the data is still there */
    assert_memory_equal(buf, "xy", 2);
    close(a[0]), close(a[1]), close(b[0]), close(p.note[0]), close(p.note[1]);
}

static void test_shutdown_of_the_write_side_counts(void **state)
{
    (void)state;
    int a[2];
    hw_probe p;
    ss_hangup_watch *w = watch_one(&p, a);
    assert_int_equal(shutdown(a[1], SHUT_WR), 0);
    wait_note(&p);
    assert_int_equal(ss_hangup_watch_stop(w), 0);
    assert_int_equal(p.calls, 1);
    close(a[0]), close(a[1]), close(p.note[0]), close(p.note[1]);
}

static void test_silent_until_stopped(void **state)
{
    (void)state;
    int a[2];
    hw_probe p;
    ss_hangup_watch *w = watch_one(&p, a);
    assert_int_equal(write(a[1], "z", 1), 1);
    assert_int_equal(ss_hangup_watch_stop(w), -1);
    close(a[1]); /* after the stop: nobody is told */
    assert_int_equal(p.calls, 0);
    assert_int_equal(ss_hangup_watch_stop(NULL), -1);
    close(a[0]), close(p.note[0]), close(p.note[1]);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    int fd = 0;
    ss_hangup_watch *w = (ss_hangup_watch *)&fd;
    ss_err e;
    assert_int_equal(ss_hangup_watch_start(&fd, 0, hw_on_hangup, NULL, &w, &e), SS_ERR_INVALID_ARG);
    assert_null(w);
    assert_int_equal(ss_hangup_watch_start(&fd, SS_HANGUP_WATCH_MAX + 1, hw_on_hangup, NULL, &w, &e),
                     SS_ERR_INVALID_ARG);
    assert_int_equal(ss_hangup_watch_start(&fd, 1, NULL, NULL, &w, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "hang-up watch"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reports_the_closed_socket_not_data),
        cmocka_unit_test(test_shutdown_of_the_write_side_counts),
        cmocka_unit_test(test_silent_until_stopped),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
