/* test_sched_pace.c — the scheduler's pacing estimate (serve/sched_pace.c): when a step may be paced, its deadline
 * from the measured own times, and the margin's adaptation, with exact numbers (no clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "serve/sched_pace.h"

/* Two steps of one batch size are needed; the estimate is the shorter of the last and the running average. */
static void test_deadline(void **state)
{
    (void)state;
    ss_pace p;
    ss_pace_init(&p, 1000, 250);
    assert_int_equal(p.margin_us, 500);
    int64_t d = -1;
    assert_int_equal(ss_pace_deadline(&p, 8, 0, &d), 0);
    ss_pace_record(&p, 8, 4000);
    assert_int_equal(ss_pace_deadline(&p, 8, 0, &d), 0); /* one step: not yet */
    ss_pace_record(&p, 8, 6000);                         /* average 4000 + (6000 - 4000) / 4 = 4500, last 6000 */
    assert_int_equal(ss_pace_deadline(&p, 8, 100, &d), 1);
    assert_int_equal(d, 100 + 4500 - 500);
    ss_pace_record(&p, 8, 2000); /* average 4500 - 2500 / 4 = 3875, last 2000: the last is shorter */
    assert_int_equal(ss_pace_deadline(&p, 8, 0, &d), 1);
    assert_int_equal(d, 2000 - 500);
    assert_int_equal(ss_pace_deadline(&p, 9, 0, &d), 0); /* another batch size: not measured */
    ss_pace_record(&p, 9, 5000);                         /* batch size changed: starts over */
    assert_int_equal(p.seen, 1);
    assert_int_equal(p.avg_us, 5000);
    assert_int_equal(ss_pace_deadline(&p, 9, 0, &d), 0);
    ss_pace_record(&p, 9, 5000);
    assert_int_equal(ss_pace_deadline(&p, 9, 0, &d), 1);
    ss_pace_forget(&p); /* idle, or a late step: measured afresh */
    assert_int_equal(ss_pace_deadline(&p, 9, 0, &d), 0);
}

/* Steps expected under min_us are not paced. */
static void test_short_steps(void **state)
{
    (void)state;
    ss_pace p;
    ss_pace_init(&p, 1000, 250);
    ss_pace_record(&p, 1, 900);
    ss_pace_record(&p, 1, 900);
    int64_t d = -1;
    assert_int_equal(ss_pace_deadline(&p, 1, 0, &d), 0);
    ss_pace_record(&p, 1, 2000); /* average 900 + 1100 / 4 = 1175, last 2000 */
    assert_int_equal(ss_pace_deadline(&p, 1, 0, &d), 1);
    assert_int_equal(d, 1175 - 500);
}

/* Late doubles the margin up to half the average; on time shrinks it by 1/32 down to the floor. */
static void test_adapt(void **state)
{
    (void)state;
    ss_pace p;
    ss_pace_init(&p, 1000, 250);
    ss_pace_record(&p, 4, 4000);
    ss_pace_record(&p, 4, 4000);
    ss_pace_adapt(&p, 1);
    assert_int_equal(p.margin_us, 1000);
    ss_pace_adapt(&p, 1);
    assert_int_equal(p.margin_us, 2000); /* half the average: the ceiling */
    ss_pace_adapt(&p, 1);
    assert_int_equal(p.margin_us, 2000);
    ss_pace_adapt(&p, 0);
    assert_int_equal(p.margin_us, 2000 - 2000 / 32);
    for (int i = 0; i < 200; i++)
        ss_pace_adapt(&p, 0);
    assert_int_equal(p.margin_us, 250); /* the floor */
    ss_pace_init(&p, 1000, 800);        /* a floor above 500 is the starting margin */
    assert_int_equal(p.margin_us, 800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_deadline), cmocka_unit_test(test_short_steps),
                                       cmocka_unit_test(test_adapt)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
