/* rank_env.c — rank discovery: flags, LeaderWorkerSet env, MPI env, or one node alone. */
#include "cli/rank_env.h"

#include "cli/opts.h"
#include "core/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int re_int(char **env, const char *key, int *out)
{
    const char *v = ss_env_get(env, key);
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < 0 || x > 1 << 20)
        return -1;
    *out = (int)x;
    return 1;
}

static ss_status re_discover(char **env, int tp, int pp, int flag_nnodes, int flag_node_rank, int flag_gpus_per_node,
                           const char *flag_leader, int rendezvous_port, ss_rank_info *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    out->world = tp * pp;
    out->nnodes = 1;
    out->source = "single node";
    int v;
    /* (-1: not given) */
    if (flag_nnodes == 0 || flag_nnodes < -1 || flag_node_rank < -1)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--nnodes %d / --node-rank %d: a replica has 1 or more nodes, "
                          "numbered from 0", flag_nnodes, flag_node_rank);
    if (flag_leader || flag_nnodes > 1 || flag_node_rank > 0) {
        out->source = "flags";
        out->nnodes = flag_nnodes > 0 ? flag_nnodes : 1;
        out->node_rank = flag_node_rank > 0 ? flag_node_rank : 0;
        if (flag_leader)
            snprintf(out->leader_addr, sizeof out->leader_addr, "%s", flag_leader);
    } else if (ss_env_get(env, "LWS_LEADER_ADDRESS")) {
        out->source = "lws";
        const char *host = ss_env_get(env, "LWS_LEADER_ADDRESS");
        const char *gs = ss_env_get(env, "LWS_GROUP_SIZE"), *wi = ss_env_get(env, "LWS_WORKER_INDEX");
        if (re_int(env, "LWS_GROUP_SIZE", &out->nnodes) < 0 || re_int(env, "LWS_WORKER_INDEX", &out->node_rank) < 0 ||
            out->nnodes < 1)
            return ss_err_set(err, SS_ERR_INVALID_ARG,
                              "LWS_GROUP_SIZE '%s' / LWS_WORKER_INDEX '%s': want a group size of 1 or more and an "
                              "index from 0",
                              gs ? gs : "", wi ? wi : "");
        snprintf(out->leader_addr, sizeof out->leader_addr, "%s:%d", host, rendezvous_port);
    } else if (re_int(env, "OMPI_COMM_WORLD_RANK", &v) > 0 || re_int(env, "PMI_RANK", &v) > 0) {
        out->source = "mpi";
        out->per_process = 1;
        out->rank = v;
        int size = 0;
        if (re_int(env, "OMPI_COMM_WORLD_SIZE", &size) <= 0)
            re_int(env, "PMI_SIZE", &size);
        if (size != out->world)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "the MPI launcher started %d processes but tp x pp = %d", size,
                              out->world);
        const char *ma = ss_env_get(env, "MASTER_ADDR");
        int mp = rendezvous_port;
        if (!ma)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "MPI launch: set MASTER_ADDR (and MASTER_PORT) to rank 0's host");
        if (re_int(env, "MASTER_PORT", &mp) < 0)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "MASTER_PORT is not a port number");
        snprintf(out->leader_addr, sizeof out->leader_addr, "%s:%d", ma, mp);
        out->nnodes = out->world;
        out->gpus_per_node = 1;
        out->node_rank = v;
        return SS_OK;
    }
    if (out->nnodes < 1 || out->node_rank >= out->nnodes)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "node rank %d is outside 0..%d (%s)", out->node_rank,
                          out->nnodes - 1, out->source);
    out->gpus_per_node = flag_gpus_per_node > 0 ? flag_gpus_per_node : out->world / out->nnodes;
    if (out->gpus_per_node * out->nnodes != out->world)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "%d nodes x %d ranks per node does not equal tp x pp = %d (%s; see --gpus-per-node)",
                          out->nnodes, out->gpus_per_node, out->world, out->source);
    out->rank = out->node_rank * out->gpus_per_node;
    if (out->nnodes > 1 && !out->leader_addr[0])
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%d nodes need --leader-addr HOST:PORT of node 0", out->nnodes);
    return SS_OK;
}

ss_status ss_rank_discover(char **env, int tp, int pp, int flag_nnodes, int flag_node_rank, int flag_gpus_per_node,
                           const char *flag_leader, int rendezvous_port, ss_rank_info *out, ss_err *err)
{
    SS_CHECK(re_discover(env, tp, pp, flag_nnodes, flag_node_rank, flag_gpus_per_node, flag_leader, rendezvous_port,
                         out, err));
    /* the address is checked here, before any loading, rather than by the rendezvous */
    char host[256];
    int port;
    if (out->leader_addr[0] && ss_net_split_addr(out->leader_addr, host, sizeof host, &port, err) != SS_OK) {
        ss_err_prefix(err, "leader address (%s)", out->source);
        return SS_ERR_INVALID_ARG;
    }
    return SS_OK;
}
