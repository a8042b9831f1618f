/* sched_state.h — the scheduler's private state, shared by its thread (sched.c) and its calls (sched_api.c): a request
 * as it tracks it, a step in flight, the scheduler itself, and the few functions the two files share. Not an
 * interface: serve/sched.h is. */
#ifndef SS_SCHED_STATE_H
#define SS_SCHED_STATE_H

#include <pthread.h>
#include <stdint.h>

#include "serve/guide_vocab.h"
#include "serve/kv_blocks.h"
#include "serve/sched.h"
#include "serve/sched_pace.h"
#include "serve/sched_spec.h"
#include "serve/stop.h"
#include "tokenizer/tokenizer.h"

#define SCHED_MAP_BUCKETS 4096 /* id -> request, for ss_sched_cancel */

typedef enum sreq_state { SREQ_QUEUED = 0, SREQ_WAITING, SREQ_RUNNING } sreq_state;

/* A request as the scheduler tracks it. Owned by the scheduler from submit to its DONE event. */
typedef struct sreq {
    uint64_t id;
    ss_gen_request *req; /* owned */
    ss_gen_callback cb;
    void *user;
    sreq_state state;
    int32_t *tokens; /* [n_tokens] prompt then generated ids (cap entries: drafts being verified follow them) */
    int32_t n_tokens, cap;
    int32_t n_prompt, n_generated;
    int32_t n_computed;    /* tokens whose KV is in the cache (reset by preemption) */
    int32_t cached_tokens; /* prompt tokens found in the prefix cache at first admission */
    int admitted;          /* admitted at least once */
    int32_t n_preempted;   /* times preempted (recomputed) */
    int32_t silent;        /* tokens in a row that gave no text (for the debug log: a stream's gap may be these) */
    ss_spec_pace spec_pace; /* speculative decoding: when it drafts next (sched_spec.h) */
    ss_kv_seq kv;
    ss_detok *detok; /* NULL without a tokenizer */
    ss_stop *stop;
    ss_guide guide;     /* JSON mode: the grammar's state and the next mask (guide.allow NULL: not started) */
    int cancel; /* set under s->mu by ss_sched_cancel */
    int64_t arrival_us, admit_us, first_token_us;
    int32_t step_tokens;      /* tokens of this sequence in the step being built (0: not planned) */
    struct sreq *next, *prev; /* inbox / waiting deque links */
    struct sreq *map_next;
} sreq;

/* A step submitted to the replica and not collected yet: its entries in plan order (an entry turns NULL when its
 * sequence ends first), their token counts, whether they sample, and their draft index (0: a sequence's own entry;
 * j > 0: the entry that verifies its j-th draft token, right after entry j - 1 of the same sequence). */
typedef struct sched_flight {
    int active;
    int32_t n;
    sreq **reqs;
    int32_t *tokens;
    uint8_t *sample;
    uint8_t *spec;
    int64_t t_submit;
} sched_flight;

struct ss_sched {
    ss_sched_params p;
    ss_replica *replica;     /* borrowed */
    const ss_tokenizer *tok; /* borrowed, may be NULL */
    ss_kv_blocks *kv;
    int32_t max_seq_len, vocab;
    int32_t kv_total;  /* blocks in the cache */
    double chunk_keys; /* keys at which a prompt token's attention costs what its projections do (ss_chunk_fit) */
    double spec_keys;  /* draft rows times context keys a sequence may have in a step (ss_spec_keys; 0: no bound) */
    int spec_pace;     /* pause a sequence's drafting after steps that confirmed nothing (p.spec_pace, SS_SPEC_PACE) */
    int spec_adapt;    /* each sequence's drafts by how many were confirmed (p.spec_adapt, SS_SPEC_ADAPT) */
    int32_t tok_vocab; /* ids the tokenizer knows (0 without one) */
    int32_t eos[SS_MAX_EOS];
    int32_t n_eos;
    ss_guide_vocab *guide; /* JSON mode's vocabulary, made for the first such request (scheduler thread) */
    /* JSON mode's next masks, made after each step for every guided sequence that sampled (masks_make) */
    ss_guide_batch *masks;
    sreq **mask_due;       /* [max_running] */
    ss_guide **mask_guide; /* [max_running] their guides */
    int32_t n_mask_due;

    pthread_t thread;
    int thread_started, thread_joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* ---- under mu ---- */
    sreq *inbox_head, *inbox_tail;
    int32_t n_inbox;
    int32_t n_waiting_shared; /* scheduler's waiting count as last published */
    sreq *map[SCHED_MAP_BUCKETS];
    uint64_t next_id;
    int cancel_pending;
    int accepting, draining, healthy;
    int64_t drain_deadline_us;
    ss_status fail_status;
    char fail_msg[sizeof(((ss_err *)0)->msg) + 64];
    ss_sched_stats stats;
    /* ---- scheduler thread only ---- */
    sreq *wait_head, *wait_tail;
    int32_t n_waiting;
    sreq **running; /* [max_running], oldest admission first */
    int32_t n_running;
    int32_t max_entries; /* plan entries of one step: max_running, more with speculation (ss_sched_max_entries) */
    sreq **plan_reqs; /* [max_entries] sequences of the step being built, plan order (a speculating one repeated) */
    uint8_t *plan_spec; /* [max_entries] each entry's draft index (sched_flight) */
    int32_t n_plan;
    ss_plan_seq *plan_seqs; /* [max_entries] */
    int32_t *plan_tokens;   /* [max_step_tokens] */
    int32_t *banned;        /* banned ids of the step, all sequences */
    size_t n_banned, banned_cap;
    size_t *banned_off; /* [max_entries] */
    uint64_t step_id;
    /* fl[cur]: the step to collect next; fl[1 - cur]: the step planned ahead of it, if any */
    sched_flight fl[2];
    int cur;
    int overlap; /* plan ahead (p.overlap, and for AUTO whether the replica runs steps asynchronously) */
    int64_t t_last_collect;
    int64_t log_step_us; /* SS_STEP_LOG_MS: steps at least this long are logged with their make-up (0: none) */
    int64_t n_steps;     /* steps collected (the log's step numbers) */
    ss_pace pace; /* pace_ahead's estimate of decode-only steps' own time, and its margin */
};

/* ---- between sched.c (the thread) and sched_api.c (the calls) ---- */

/* The scheduler thread (arg: the ss_sched): steps while there is work, until a drain ends it. */
void *sched_thread(void *arg);
/* The id map of requests for ss_sched_cancel; under s->mu. */
void sched_map_insert(ss_sched *s, sreq *r);
sreq *sched_map_find(ss_sched *s, uint64_t id);
/* Frees r and everything it owns (its request included). */
void sched_req_free(sreq *r);

#endif
