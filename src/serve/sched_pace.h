/* sched_pace.h — the scheduler's pacing estimate: how long decode-only steps of one batch size take on their own, and
 * how long before such a step's expected end the next one is planned (a margin that adapts to late wake-ups). */
#ifndef SS_SCHED_PACE_H
#define SS_SCHED_PACE_H

#include <stdint.h>

/* A value type, owned by the scheduler (no allocation). */
typedef struct ss_pace {
    int32_t n, seen;         /* the batch size measured, and its steps measured since it changed */
    int64_t avg_us, last_us; /* their own time: a running average (1/4 weight), the last one */
    int64_t margin_us;       /* planned this long before the expected end */
    int64_t min_us;          /* steps expected to take less are not paced */
    int64_t margin_min_us;   /* the margin's floor */
} ss_pace;

/* Starts p with no measurement, a margin of max(margin_min_us, 500). */
void ss_pace_init(ss_pace *p, int64_t min_us, int64_t margin_min_us);
/* Records the own time of a decode-only step of n sequences. */
void ss_pace_record(ss_pace *p, int32_t n, int64_t own_us);
/* Forgets the measurements of the current batch size (after an idle spell, or a step whose time includes a wait past
 * its end): the next two steps are measured afresh. */
void ss_pace_forget(ss_pace *p);
/* When a decode-only step of n sequences that started at start_us (its submission, or the end of the step it was
 * queued behind) may be paced: 1 with *deadline_us, the time to plan the next step at (the shorter of the last and
 * the average own time after start, less the margin); 0 when n ran fewer than twice or the estimate is under min_us. */
int ss_pace_deadline(const ss_pace *p, int32_t n, int64_t start_us, int64_t *deadline_us);
/* After a paced step was submitted: late (the step before it had ended by then) doubles the margin; otherwise it
 * shrinks by 1/32; it stays between margin_min_us and half the average own time. */
void ss_pace_adapt(ss_pace *p, int late);

#endif
