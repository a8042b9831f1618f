/* sampler.h — a step's token choice from its logits rows: on the device (logit edits, JSON mode's masks, the sample
 * op and top log-probability lists, read back with one copy) or, for steps that return logits, on the host. */
#ifndef SS_SAMPLER_H
#define SS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/status.h"
#include "runner/step_plan.h"

typedef struct ss_sampler ss_sampler;

/* be: borrowed, outlives the sampler. device: 1 on ranks that sample on the device (the last stage), whose edit and
 * mask buffers for max_seqs sequences are allocated here, never on the step path (freeing there would wait for the
 * device and its collectives). */
ss_status ss_sampler_create(ss_backend *be, int32_t vocab, int32_t max_seqs, int device, ss_sampler **out,
                            ss_err *err);
void ss_sampler_destroy(ss_sampler *s);

/* Bytes of the device (and read-back) buffer that ss_sampler_device writes for up to max_rows rows. */
size_t ss_sampler_out_bytes(int32_t max_rows);

/* 1 when q's sampling needs its whole logits row: anything but greedy with nothing to edit, mask or list. */
int ss_sampler_needs_row(const ss_plan_seq *q);

/* Whether the device path can take plan (not when it returns logits, or its lists or edits outgrow the read-back or
 * the buffers); builds the step's logit edits, which ss_sampler_device and ss_sampler_host apply. row_of_seq[s]: the
 * logits row of plan sequence s (borrowed for the call). The answer depends on the plan only, so every rank gives
 * the same one. */
ss_status ss_sampler_prepare(ss_sampler *s, const ss_step_plan *plan, const int32_t *row_of_seq, int *device,
                             ss_err *err);

/* The device path (after ss_sampler_prepare said so): enqueues the edits and masks over logits (the forward pass's
 * scratch, one row per sampling sequence in plan order, edited in place), the sample op and, with lists, the top
 * log-probability lists, into out (device, ss_sampler_out_bytes): [n tokens][n log-probabilities], then with lists
 * [n * k ids][n * k log-probabilities]. *bytes: what to read back; *k: the lists' length (0: none). */
ss_status ss_sampler_device(ss_sampler *s, const ss_step_plan *plan, float *logits, int32_t *out, int lists,
                            size_t *bytes, int32_t *k, ss_err *err);

/* Each sampling sequence's own list length into row_k (n entries), for ss_sampler_unpack. */
void ss_sampler_row_lists(const ss_step_plan *plan, int32_t *row_k);

/* Turns a read-back buffer of n rows (lists of k; row_k: each row's own length, the rest of its list -1 / -inf)
 * into o (cleared first; arrays owned by o). */
ss_status ss_sampler_unpack(const int32_t *buf, int32_t n, int32_t k, const int32_t *row_k, ss_step_output *o,
                            ss_err *err);

/* The host path: downloads the n_rows logits rows and samples plan's sequences on the helper threads into o
 * (logits returned too when the plan asks). Needs ss_sampler_prepare of the same plan (its edits and counts). */
ss_status ss_sampler_host(ss_sampler *s, const ss_step_plan *plan, const int32_t *row_of_seq, const float *logits,
                          int32_t n_rows, ss_step_output *o, ss_err *err);

#endif
