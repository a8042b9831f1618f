/* replica.c — the leader's view of a replica. One rank: the runner in this process. Several ranks:
 * worker processes joined through the bootstrap, driven over the control plane (replica_remote.c). */
#include "runner/replica.h"

#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "runner/runner.h"

struct ss_replica {
    ss_replica_params p;
    ss_runner *runner; /* rank 0's runner */
    ss_comm *tp_comm;
    ss_comm *world;
    void *remote;      /* multi-rank control plane (replica_remote.c); NULL when alone */
};

ss_replica_params ss_replica_default_params(void)
{
    ss_replica_params p;
    memset(&p, 0, sizeof p);
    p.tp = 1;
    p.pp = 1;
    p.backend = ss_backend_default_params();
    p.block_size = 16;
    p.max_batch_tokens = 2048;
    p.max_seqs = 256;
    p.nnodes = 1;
    p.comm_timeout_ms = 60000;
    return p;
}

ss_status ss_replica_create(const ss_replica_params *params, ss_replica **out, ss_err *err)
{
    *out = NULL;
    if (params->tp * params->pp != 1)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "tp %d x pp %d: multi-rank replicas are not built in yet",
                          params->tp, params->pp);
    ss_replica *r = ss_calloc(1, sizeof *r);
    if (!r)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    r->p = *params;
    ss_status st;
    SS_CHECK_GOTO(ss_comm_create_single(&r->tp_comm, err), st, fail);
    ss_runner_params rp = {params->model_dir, 1, 1, 0, params->backend, params->block_size, params->num_kv_blocks,
                           params->max_seq_len, params->max_batch_tokens, params->max_seqs};
    ss_runner_links links = {r->tp_comm, NULL};
    SS_CHECK_GOTO(ss_runner_create(&rp, &links, &r->runner, err), st, fail);
    *out = r;
    return SS_OK;
fail:
    ss_replica_destroy(r);
    return st;
}

ss_status ss_replica_step(ss_replica *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err)
{
    return ss_runner_step(r->runner, plan, out, err);
}

const ss_model_config *ss_replica_config(const ss_replica *r)
{
    return ss_runner_config(r->runner);
}

int32_t ss_replica_num_kv_blocks(const ss_replica *r)
{
    return ss_runner_num_kv_blocks(r->runner);
}

int32_t ss_replica_block_size(const ss_replica *r)
{
    return ss_runner_block_size(r->runner);
}

int32_t ss_replica_max_seq_len(const ss_replica *r)
{
    return ss_runner_max_seq_len(r->runner);
}

void ss_replica_destroy(ss_replica *r)
{
    if (!r)
        return;
    ss_runner_destroy(r->runner);
    ss_comm_destroy(r->tp_comm);
    ss_comm_destroy(r->world);
    ss_free(r);
}
