/* test_comm_teardown.c — ss_comm_destroy_bounded and ss_comm_stop over fake communicators: order of
 * aborts and destroys, NULL handling, and the deadline when a destroy hangs (as NCCL's can). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/alloc.h"
#include "core/clock.h"

/* A fake communicator that records into a shared journal: 'A' abort, 'D' destroy, then its id. */
typedef struct journal {
    char log[64];
    atomic_int len;
    atomic_int release; /* a hanging destroy waits until this is set */
} journal;

typedef struct fake {
    journal *j;
    char id;
    int hang; /* destroy blocks until j->release */
} fake;

static void note(journal *j, char what, char id)
{
    int at = atomic_fetch_add(&j->len, 2);
    if (at + 2 < (int)sizeof j->log) {
        j->log[at] = what;
        j->log[at + 1] = id;
    }
}

static void fake_abort(void *ctx)
{
    fake *f = ctx;
    note(f->j, 'A', f->id);
}

static void fake_destroy(void *ctx)
{
    fake *f = ctx;
    while (f->hang && !atomic_load(&f->j->release)) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    note(f->j, 'D', f->id);
    ss_free(f);
}

static const ss_comm_i fake_iface = {
    .version = SS_COMM_IFACE_VERSION,
    .name = "fake",
    .abort = fake_abort,
    .destroy = fake_destroy,
};

static ss_comm *fake_comm(journal *j, char id, int hang)
{
    ss_comm *c = ss_calloc(1, sizeof *c);
    fake *f = ss_calloc(1, sizeof *f);
    assert_non_null(c);
    assert_non_null(f);
    f->j = j, f->id = id, f->hang = hang;
    c->iface = &fake_iface;
    c->ctx = f;
    c->size = 2;
    return c;
}

/* Waits up to 60 s (a bound on a hang only: the helper thread may start late on a loaded machine) for the
 * journal to hold n entries. */
static void wait_journal(journal *j, int n)
{
    for (int i = 0; i < 12000 && atomic_load(&j->len) < n; i++) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_abort_first_then_destroy(void **state)
{
    (void)state;
    journal j;
    memset(&j, 0, sizeof j);
    assert_int_equal(ss_comm_destroy_bounded(fake_comm(&j, 't', 0), fake_comm(&j, 'w', 0), 1, 60000), 1);
    j.log[atomic_load(&j.len)] = '\0';
    assert_string_equal(j.log, "AtAwDtDw"); /* both aborted before either is destroyed */
}

static void test_clean_destroy_does_not_abort(void **state)
{
    (void)state;
    journal j;
    memset(&j, 0, sizeof j);
    assert_int_equal(ss_comm_destroy_bounded(fake_comm(&j, 't', 0), NULL, 0, 60000), 1);
    assert_int_equal(ss_comm_destroy_bounded(NULL, fake_comm(&j, 'w', 0), 0, 60000), 1);
    assert_int_equal(ss_comm_destroy_bounded(NULL, NULL, 1, 60000), 1);
    j.log[atomic_load(&j.len)] = '\0';
    assert_string_equal(j.log, "DtDw");
}

static void test_hanging_destroy_hits_the_deadline(void **state)
{
    (void)state;
    static journal j; /* outlives the call: the stuck helper thread still uses it */
    memset(&j, 0, sizeof j);
    double t0 = ss_now_s();
    assert_int_equal(ss_comm_destroy_bounded(fake_comm(&j, 't', 1), fake_comm(&j, 'w', 0), 1, 300), 0);
    double waited = ss_now_s() - t0;
    /* returned at its deadline, not when the destroy ended (a bound, not a timing measurement) */
    assert_true(waited >= 0.25);
    wait_journal(&j, 4);                      /* the helper may not have run yet when the deadline came */
    assert_int_equal(atomic_load(&j.len), 4); /* the two aborts ran; no destroy finished (t's hangs, w's after it) */
    atomic_store(&j.release, 1);              /* let the helper finish and free what it holds */
    wait_journal(&j, 8);
    assert_int_equal(atomic_load(&j.len), 8);
}

static void test_stop_aborts_non_nccl(void **state)
{
    (void)state;
    journal j;
    memset(&j, 0, sizeof j);
    ss_comm *c = fake_comm(&j, 's', 0);
    ss_comm_stop(c);
    ss_comm_stop(NULL);
    ss_comm_destroy(c);
    j.log[atomic_load(&j.len)] = '\0';
    assert_string_equal(j.log, "AsDs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abort_first_then_destroy),
        cmocka_unit_test(test_clean_destroy_does_not_abort),
        cmocka_unit_test(test_hanging_destroy_hits_the_deadline),
        cmocka_unit_test(test_stop_aborts_non_nccl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
