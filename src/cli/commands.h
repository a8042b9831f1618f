/* commands.h — the subcommands of the shardserve binary; each lives in src/cli/cmd_<name>.c.
 * Each returns a process exit code (DESIGN.md §2) and receives the process environment. */
#ifndef SS_CLI_COMMANDS_H
#define SS_CLI_COMMANDS_H

#include "core/status.h"
#include "engine/engine.h"

int ss_cmd_generate(int argc, char **argv, char **env);
int ss_cmd_serve(int argc, char **argv, char **env);
int ss_cmd_prepare(int argc, char **argv, char **env);
int ss_cmd_bench(int argc, char **argv, char **env);
int ss_cmd_tokenize(int argc, char **argv, char **env);
int ss_cmd_chat_template(int argc, char **argv, char **env);
int ss_cmd_worker(int argc, char **argv, char **env);

/* --kv-cache-dtype's help, shared by `serve` and `generate` (parsed by ss_kv_type_parse). */
#define SS_KV_DTYPE_HELP                                                                                             \
    "auto | fp8: the KV cache's element type (auto: the activations'; fp8: e4m3 with a scale per row, about "        \
    "half the memory and bytes read per step)"

/* --quantization's help, shared by `serve` and `generate` (parsed by ss_linear_type_parse). */
#define SS_QUANT_HELP                                                                                                \
    "auto | none | fp8: the projection weights' format on the device (fp8: e4m3 with one scale per row, quantised "  \
    "at load; about half the weight memory and bytes read per decode step; auto: fp8 for an fp8 checkpoint, else "  \
    "none)"

struct ss_rank_info;
/* For `serve`/`generate` on a node other than the leader's: runs this node's ranks as workers, each trying to reach
 * the leader (which may still be preparing the engine) for join_timeout_s seconds (--join-timeout). */
int ss_cli_run_node(const struct ss_rank_info *info, int64_t join_timeout_s);

/* --join-timeout's range and default for serve and generate (the worker command's default is 600). */
#define SS_CLI_JOIN_TIMEOUT_DEFAULT 3600
#define SS_CLI_JOIN_TIMEOUT_MAX 86400

/* The engine-preparing path of `prepare`, shared with `serve` (cmd_prepare.c). */
ss_status ss_cli_engine_prepare(char **env, ss_engine_params *p, const char *cache, const char *token_file,
                                char **dir, ss_err *err);

#endif
