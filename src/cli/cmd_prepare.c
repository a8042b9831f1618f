/* cmd_prepare.c — `shardserve prepare`: find or build the engine of a checkpoint (local folder or
 * Hugging Face id) in the cache and print its folder; `--check DIR` verifies an engine instead. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "core/alloc.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/status.h"
#include "engine/engine.h"
#include "engine/hub.h"

/* Reads a token file (a mounted Kubernetes secret, or the huggingface-cli one); trims whitespace.
 * *out is the caller's. Missing optional files give SS_OK with *out NULL. */
static ss_status prep_read_token(const char *path, int required, char **out, ss_err *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    ss_status st = ss_read_file(path, 4096, &text, &len, err);
    if (st == SS_ERR_NOT_FOUND && !required)
        return SS_OK;
    if (st != SS_OK)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--hf-token-file %s: cannot read it (missing, unreadable or over 4 KiB)",
                          path);
    char *b = text, *e = text + len;
    while (b < e && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (e > b)
        *out = ss_strndup(b, (size_t)(e - b));
    memset(text, 0, len);
    ss_free(text);
    if (e > b && !*out)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    if (required && !*out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--hf-token-file %s: the file is empty", path);
    return SS_OK;
}

/* The prepare path shared with `serve`: default cache root, Hub token (--hf-token-file, HF_TOKEN, or
 * the huggingface-cli file), HF_ENDPOINT, then ss_engine_prepare. p holds model, revision, tp, pp,
 * dtype and tuning (its cache_dir and hf_token are set for the call only); *dir is ss_malloc'd. The token never
 * reaches err. */
ss_status ss_cli_engine_prepare(char **env, ss_engine_params *p, const char *cache, const char *token_file,
                                char **dir, ss_err *err)
{
    char cache_buf[4096];
    if (!cache) {
        const char *home = ss_env_get(env, "HOME");
        snprintf(cache_buf, sizeof cache_buf, "%s/.cache/shardserve", home && home[0] ? home : ".");
        cache = cache_buf;
    }
    char *token = NULL;
    ss_status st = SS_OK;
    if (token_file) {
        st = prep_read_token(token_file, 1, &token, err);
    } else if (ss_env_get(env, "HF_TOKEN") && ss_env_get(env, "HF_TOKEN")[0]) {
        token = ss_strdup(ss_env_get(env, "HF_TOKEN"));
    } else {
        char path[4096];
        const char *hf_home = ss_env_get(env, "HF_HOME"), *home = ss_env_get(env, "HOME");
        if (hf_home && hf_home[0])
            snprintf(path, sizeof path, "%s/token", hf_home);
        else
            snprintf(path, sizeof path, "%s/.cache/huggingface/token", home ? home : ".");
        st = prep_read_token(path, 0, &token, err);
    }
    if (st != SS_OK)
        return st;
    p->cache_dir = cache;
    const char *endpoint = ss_env_get(env, "HF_ENDPOINT");
    if (endpoint && endpoint[0])
        p->hf_endpoint = endpoint;
    p->hf_token = token;
    st = ss_engine_prepare(p, dir, err);
    if (token) {
        ss_hub_mask(err->msg, token);
        memset(token, 0, strlen(token));
        ss_free(token);
    }
    p->hf_token = NULL;
    p->cache_dir = NULL; /* it may point at cache_buf, which dies here */
    return st;
}

int ss_cmd_prepare(int argc, char **argv, char **env)
{
    const char *model = NULL, *revision = "main", *dtype = "bf16", *cache = NULL, *token_file = NULL;
    const char *verify = "sizes", *check = NULL;
    int64_t tp = 1, pp = 1, parallel = 4, threads = 0;
    double stale_s = 30, throttle_mbps = 0;
    int quiet = 0;
    const ss_opt opts[] = {
        {"model", SS_OPT_STR, &model, "Hugging Face id (org/name) or checkpoint folder"},
        {"revision", SS_OPT_STR, &revision, "Hub branch, tag or commit (default main)"},
        {"tp", SS_OPT_INT, &tp, "tensor-parallel degree (default 1)"},
        {"pp", SS_OPT_INT, &pp, "pipeline-parallel degree (default 1)"},
        {"dtype", SS_OPT_STR, &dtype, "bf16 | fp16 | fp32 (default bf16)"},
        {"cache", SS_OPT_STR, &cache, "cache root (default ~/.cache/shardserve)"},
        {"hf-token-file", SS_OPT_STR, &token_file, "file holding the Hub token (else HF_TOKEN)"},
        {"download-parallel", SS_OPT_INT, &parallel, "files downloaded at once (default 4)"},
        {"threads", SS_OPT_INT, &threads, "builder threads (default min(ranks, 4))"},
        {"lock-stale-s", SS_OPT_FLOAT, &stale_s, "take over a lock whose heartbeat is older (3..86400, default 30)"},
        {"verify", SS_OPT_STR, &verify,
         "check of an existing engine: sizes (and the small files' digests) | full (default sizes)"},
        {"check", SS_OPT_STR, &check, "verify the engine folder DIR fully and exit"},
        {"throttle-mbps", SS_OPT_FLOAT, &throttle_mbps, "(tests) cap the write rate of each rank file, MB/s"},
        {"quiet", SS_OPT_BOOL, &quiet, "no progress output"},
        {NULL, SS_OPT_STR, NULL, NULL},
    };
    ss_err err = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "prepare", &err);
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st != SS_OK) {
        fprintf(stderr, "shardserve prepare: %s\n", err.msg);
        return SS_EXIT_USAGE;
    }
    if (check) {
        st = ss_engine_verify(check, SS_ENGINE_VERIFY_FULL, &err);
        if (st != SS_OK) {
            fprintf(stderr, "shardserve prepare: engine check failed: %s\n", err.msg);
            return ss_status_exit_code(st) == SS_EXIT_USAGE ? SS_EXIT_BAD_INPUT : ss_status_exit_code(st);
        }
        printf("%s: ok\n", check);
        return SS_EXIT_OK;
    }
    ss_engine_params p = ss_engine_default_params();
    const ss_opts_src src = {opts, argc, argv, 2, env};
    if (!model)
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--model is required (a Hugging Face id or a checkpoint folder)");
    else if (tp < 1 || tp > 4096 || pp < 1 || pp > 4096)
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--tp and --pp must be in 1..4096 (got %lld and %lld)", (long long)tp,
                        (long long)pp);
    else if (ss_engine_dtype_parse(dtype, &p.dtype, &err) != SS_OK)
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--dtype %s: expected bf16, fp16 or fp32", dtype);
    else if (!(stale_s >= 3 && stale_s <= 86400)) /* the holder's heartbeat comes every 2 s: a limit near it takes live
                                                   * builders over (and removes their work) */
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--lock-stale-s %g: must be in 3..86400 seconds (a holder refreshes "
                        "its lock every 2 s)", stale_s);
    else if (!strcmp(verify, "full"))
        p.verify = SS_ENGINE_VERIFY_FULL;
    else if (strcmp(verify, "sizes"))
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--verify %s: expected sizes or full", verify);
    if (st != SS_OK) {
        ss_opts_explain(&src, &err);
        fprintf(stderr, "shardserve prepare: %s\n", err.msg);
        return SS_EXIT_USAGE;
    }
    p.model = model;
    p.revision = revision;
    p.tp = (int)tp;
    p.pp = (int)pp;
    p.download_parallel = (int)parallel;
    p.threads = (int)threads;
    p.lock.stale_s = stale_s;
    p.throttle_bps = (int64_t)(throttle_mbps * 1e6);
    p.tty = isatty(STDERR_FILENO);
    p.quiet = quiet;
    char *dir = NULL;
    st = ss_cli_engine_prepare(env, &p, cache, token_file, &dir, &err);
    if (st != SS_OK) {
        fprintf(stderr, "shardserve prepare: %s\n", err.msg);
        return ss_status_exit_code(st);
    }
    printf("%s\n", dir);
    ss_free(dir);
    return SS_EXIT_OK;
}
