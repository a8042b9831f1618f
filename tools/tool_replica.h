/* tool_replica.h — what the tools that drive a replica directly (bench_decode, eval_ppl) share: the replica
 * options (device, tp × pp, KV and weight formats) and the replica parameters they give. Header only: every
 * tool in tools/ is its own executable. */
#ifndef SS_TOOL_REPLICA_H
#define SS_TOOL_REPLICA_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/opts.h"
#include "runner/replica.h"

typedef struct tool_replica_opts {
    const char *device, *kv_dtype, *quant; /* borrowed from argv or the defaults */
    int64_t tp, pp;
} tool_replica_opts;

#define TOOL_REPLICA_DEFAULTS {"auto", "auto", "auto", 1, 1}

/* The options' entries of an ss_opt table, for a tool_replica_opts o. */
#define TOOL_REPLICA_OPTIONS(o)                                                                                  \
    {"device", SS_OPT_STR, &(o).device, "auto | cpu | cuda"},                                                    \
        {"kv-cache-dtype", SS_OPT_STR, &(o).kv_dtype, "auto | fp8"},                                             \
        {"quantization", SS_OPT_STR, &(o).quant, "auto | none | fp8 (projection weights; auto: fp8 for an fp8 checkpoint)"},                             \
        {"tp", SS_OPT_INT, &(o).tp, "tensor parallel"}, {"pp", SS_OPT_INT, &(o).pp, "pipeline parallel"}

/* Replica parameters for model (borrowed) from o: the defaults, with o's device, tp × pp and formats (a bad
 * format value fails, named in err); other ranks run `shardserve worker` from the folder above tools/. */
static inline ss_status tool_replica_params(const tool_replica_opts *o, const char *model, ss_replica_params *p,
                                            ss_err *err)
{
    *p = ss_replica_default_params();
    SS_CHECK(ss_kv_type_parse(o->kv_dtype, &p->backend.kv_type, err));
    SS_CHECK(ss_linear_type_parse(o->quant, &p->backend.linear_type, err));
    p->model_dir = model;
    p->tp = (int)o->tp;
    p->pp = (int)o->pp;
    p->backend.device = !strcmp(o->device, "cuda") ? SS_DEVICE_CUDA
                        : !strcmp(o->device, "cpu") ? SS_DEVICE_CPU
                                                    : SS_DEVICE_AUTO;
    static char exe[4096];
    ssize_t xl = readlink("/proc/self/exe", exe, sizeof exe - 32);
    if (xl > 0) {
        exe[xl] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            snprintf(slash, sizeof exe - (size_t)(slash - exe), "/../shardserve");
        p->worker_exe = exe;
    }
    return SS_OK;
}

#endif
