/* rank_env.h — where this process sits in its replica (DESIGN.md §2): explicit flags first, then a
 * LeaderWorkerSet's environment, then an MPI launcher's. */
#ifndef SS_RANK_ENV_H
#define SS_RANK_ENV_H

#include "core/status.h"

typedef struct ss_rank_info {
    int world;           /* tp * pp */
    int nnodes;          /* machines (pods) in the replica */
    int node_rank;       /* this machine's index */
    int gpus_per_node;   /* ranks per machine */
    int rank;            /* first rank of this process = node_rank * gpus_per_node (MPI: its own rank) */
    int per_process;     /* 1: one process per rank, started by a launcher (MPI): spawn nothing */
    char leader_addr[300]; /* "host:port" of rank 0's rendezvous, "" when alone on one node */
    const char *source;  /* "flags", "lws", "mpi", "single node" (static) */
} ss_rank_info;

/* Resolves placement. flag_leader may be NULL; flag_nnodes/node_rank/gpus_per_node < 0 = unset.
 * rendezvous_port is used with LWS and MPI when their env carries no port. */
ss_status ss_rank_discover(char **env, int tp, int pp, int flag_nnodes, int flag_node_rank, int flag_gpus_per_node,
                           const char *flag_leader, int rendezvous_port, ss_rank_info *out, ss_err *err);

#endif
