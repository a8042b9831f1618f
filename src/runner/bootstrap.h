/* bootstrap.h — rendezvous of a replica's ranks at the leader: handshake with a version stamp, the
 * replica's settings handed out by the leader, and the TCP mesh (or NCCL ids) for the data plane. */
#ifndef SS_BOOTSTRAP_H
#define SS_BOOTSTRAP_H

#include <stdint.h>

#include "core/status.h"
#include "runner/runner.h"

/* Control-plane message types. */
enum {
    SS_MSG_HELLO = 1,   /* worker -> leader: rank, world, stamp */
    SS_MSG_REJECT,      /* leader -> worker: reason */
    SS_MSG_WELCOME,     /* leader -> worker: settings, peer table */
    SS_MSG_READY,       /* worker -> leader: weights loaded (model digest) */
    SS_MSG_PLAN,        /* leader -> worker: a step plan */
    SS_MSG_OUTPUT,      /* output rank -> leader: sampled tokens */
    SS_MSG_ERROR,       /* worker -> leader: a step failed (text) */
    SS_MSG_LOAD_ERROR,  /* worker -> leader, instead of READY: loading failed (u32 ss_status, then text) */
};

#define SS_BOOT_MAX_RANKS 64

/* Settings every rank must share; the leader's copy is authoritative. */
typedef struct ss_boot_settings {
    char model_dir[1024];
    int32_t tp, pp;
    int32_t device;          /* ss_device_kind */
    int32_t n_threads;
    int32_t kv_type;         /* ss_kv_type of every rank's KV cache */
    int32_t linear_type;     /* ss_linear_type of every rank's projection weights (auto: each rank resolves it from
                              * the config, its slice and its device: runner.c) */
    int32_t block_size, num_kv_blocks, max_seq_len, max_seqs;
    int64_t max_batch_tokens;
    int32_t comm_timeout_ms;
    int32_t gpus_per_node;   /* device index = rank % gpus_per_node */
    int32_t no_graphs;       /* 1: decode steps run op by op on every rank (graph use must be uniform) */
    int32_t graph_bucket;    /* a graph step's token bucket on every rank (ss_forward_graph_bucket, the leader's) */
    uint8_t nccl_ids[1 + SS_BOOT_MAX_RANKS][128]; /* [0] world, [1 + stage] the stage's tp group (cuda) */
} ss_boot_settings;

/* What a rank holds after rendezvous. */
typedef struct ss_boot {
    int rank, world;
    int ctrl_fd;                      /* worker: socket to the leader; leader: -1 */
    int peer_ctrl[SS_BOOT_MAX_RANKS]; /* leader: socket to each worker (index 0 unused) */
    int mesh[SS_BOOT_MAX_RANKS];      /* data-plane sockets to every other rank (-1 for self) */
    ss_boot_settings settings;
} ss_boot;

/* The stamp two ranks must agree on: build version, engine format, device support. */
void ss_boot_stamp(char *buf, size_t cap);

/* Leader: listens on host:port (port 0 = ephemeral; *bound_port set) — call before spawning workers. */
ss_status ss_boot_leader_listen(const char *host, int port, int *lfd, int *bound_port, ss_err *err);
/* Called every SS_BOOT_WATCH_MS while the leader waits for ranks to join: SS_OK keeps it waiting; an error (set
 * in err) ends the wait with it (the replica: a rank it started itself has exited). */
typedef ss_status (*ss_boot_watch_fn)(void *arg, ss_err *err);
#define SS_BOOT_WATCH_MS 200
/* Leader: accepts world-1 workers before the deadline (rejecting mismatched stamps and keeping on
 * waiting), sends them the settings, then builds the data-plane mesh. watch (NULL: none) with watch_arg. */
ss_status ss_boot_leader(int lfd, int world, const ss_boot_settings *settings, int64_t deadline_ms,
                         ss_boot_watch_fn watch, void *watch_arg, ss_boot *out, ss_err *err);
/* Worker: connects to the leader (retrying until the deadline), says hello, gets the settings,
 * joins the mesh. stamp_override (tests) replaces the real stamp when non-NULL. */
ss_status ss_boot_worker(const char *leader_addr, int rank, int world, int64_t deadline_ms,
                         const char *stamp_override, ss_boot *out, ss_err *err);
/* Worker: tells the leader that loading failed with st and err's text (best effort: the leader may be gone). */
void ss_boot_report_load_error(const ss_boot *b, ss_status st, const ss_err *err);
/* Leader: reads a SS_MSG_LOAD_ERROR payload: the worker's status (SS_ERR_COMM when the message is malformed or the
 * status out of range) and *text / *text_len, the worker's message (pointing into msg). */
ss_status ss_boot_parse_load_error(const uint8_t *msg, size_t len, const char **text, int *text_len);
/* Closes every socket. */
void ss_boot_close(ss_boot *b);

/* Builds the runner of this rank and its comms from a finished rendezvous. *tp and *world are
 * created here and owned by the caller (destroy after the runner). */
ss_status ss_boot_make_runner(ss_boot *b, ss_runner **runner, ss_comm **tp, ss_comm **world, ss_err *err);

/* Worker main loop: plans in, outputs out, until shutdown or failure. Returns the exit status. */
ss_status ss_worker_loop(ss_boot *b, ss_runner *runner, ss_err *err);

#endif
