/* cmd_generate.c — `shardserve generate`: one-shot generation for people and tests, from text, a chat
 * file or token ids, greedy or sampled, printing text or JSON (ids, text, top log-probabilities). */
#include <assert.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/engine_layout.h"
#include "cli/opts.h"
#include "cli/rank_env.h"
#include "core/alloc.h"
#include "core/fileio.h"
#include "core/log.h"
#include "runner/replica.h"
#include "serve/guide_vocab.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

typedef struct gen_opts {
    const char *model, *prompt, *prompt_ids, *chat, *output, *device, *kv_dtype, *quant;
    int64_t max_tokens, top_k, seed, logprobs, tp, pp, threads;
    int64_t nnodes, node_rank, gpus_per_node, rdzv_port, comm_timeout, join_timeout;
    const char *leader_addr;
    double temperature, top_p, min_p;
    int ignore_eos, quiet, json_mode;
    const char *json_schema;
} gen_opts;

/* Parses "1,2,3" (or a JSON array) into ids (caller frees). */
static ss_status gen_parse_ids(const char *s, int32_t **ids, int32_t *n, ss_err *err)
{
    size_t cap = strlen(s) / 2 + 2;
    int32_t *v = ss_malloc(cap * sizeof *v);
    if (!v)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    int32_t k = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\n')
            p++;
        if (!*p)
            break;
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > INT32_MAX) {
            ss_free(v);
            return ss_err_set(err, SS_ERR_INVALID_ARG, "--prompt-ids: '%.20s' is not a token id", p);
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (!k) {
        ss_free(v);
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--prompt-ids: no ids given");
    }
    *ids = v;
    *n = k;
    return SS_OK;
}

/* Renders --chat FILE (messages JSON) with the model's chat template and encodes it. */
static ss_status gen_chat_ids(const ss_tokenizer *tok, const char *file, int32_t **ids, int32_t *n, ss_err *err)
{
    const char *src = ss_tokenizer_chat_template(tok);
    if (!src)
        return ss_err_set(err, SS_ERR_NOT_FOUND, "--chat: the model's tokenizer_config.json has no chat_template");
    char *text = NULL;
    size_t len = 0;
    SS_CHECK(ss_read_file(file, 16u << 20, &text, &len, err));
    cJSON *j = cJSON_ParseWithLength(text, len);
    ss_free(text);
    cJSON *msgs = j && cJSON_IsObject(j) ? cJSON_GetObjectItem(j, "messages") : j;
    if (!cJSON_IsArray(msgs)) {
        cJSON_Delete(j);
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: expected a JSON array of messages (or {\"messages\": [...]})",
                          file);
    }
    ss_template *t = NULL;
    char *rendered = NULL;
    size_t rl = 0;
    size_t nn = 0;
    ss_status st = ss_template_compile(src, strlen(src), "chat_template", &t, err);
    if (st == SS_OK)
        st = ss_chat_template_apply(t, msgs, NULL, 1, ss_tokenizer_bos_token(tok), ss_tokenizer_eos_token(tok), &rendered,
                                    &rl, err);
    if (st == SS_OK)
        st = ss_tokenizer_encode(tok, rendered, rl, 0, ids, &nn, err);
    *n = (int32_t)nn;
    ss_free(rendered);
    ss_template_destroy(t);
    cJSON_Delete(j);
    return st;
}

static int gen_is_eos(const ss_model_config *cfg, int32_t tok)
{
    for (int32_t i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == tok)
            return 1;
    return 0;
}

/* JSON mode (--json-mode, --json-schema): the schema (NULL: any object), the vocabulary's bytes and the
 * output's guide. */
typedef struct gen_guide {
    ss_json_schema *schema;
    ss_guide_vocab *vocab;
    ss_guide g;
} gen_guide;

static ss_status gen_guide_start(gen_guide *g, const char *schema_path, const ss_tokenizer *tok, int32_t vocab,
                                 ss_err *e)
{
    if (!tok)
        return ss_err_set(e, SS_ERR_UNSUPPORTED, "JSON mode needs the model's tokenizer");
    if (schema_path) {
        char *text = NULL;
        size_t len = 0;
        SS_CHECK(ss_read_file(schema_path, (size_t)16 << 20, &text, &len, e));
        cJSON *j = cJSON_ParseWithLength(text, len);
        ss_free(text);
        if (!j)
            return ss_err_set(e, SS_ERR_INVALID_ARG, "--json-schema %s: not JSON", schema_path);
        ss_status st = ss_json_schema_compile(j, &g->schema, e);
        cJSON_Delete(j);
        if (st != SS_OK) /* a schema the user wrote: a usage error (exit 2), whatever the reason */
            return st == SS_ERR_NOMEM ? st : SS_ERR_INVALID_ARG;
    }
    SS_CHECK(ss_guide_vocab_create(tok, vocab, &g->vocab, e));
    return ss_guide_start(&g->g, g->vocab, g->schema ? g->schema : ss_json_schema_any_object(), e);
}

static void gen_guide_free(gen_guide *g)
{
    ss_guide_clear(&g->g);
    ss_guide_vocab_destroy(g->vocab);
    ss_json_schema_destroy(g->schema);
}

static int gen_fail(const ss_opts_src *src, ss_status st, ss_err *e)
{
    ss_opts_explain(src, e);
    fprintf(stderr, "shardserve generate: %s\n", e->msg);
    return ss_status_exit_code(st);
}

int ss_cmd_generate(int argc, char **argv, char **env)
{
    gen_opts o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 32;
    o.temperature = 0;
    o.top_p = 1.0;
    o.output = "text";
    o.device = "auto";
    o.kv_dtype = "auto";
    o.quant = "auto";
    o.tp = o.pp = SS_CLI_UNSET; /* left out: the engine's own layout, else 1 (below) */
    o.nnodes = o.node_rank = o.gpus_per_node = -1;
    o.rdzv_port = 29500;
    o.join_timeout = SS_CLI_JOIN_TIMEOUT_DEFAULT;
    o.comm_timeout = 60;
    ss_opt opts[] = {
        {"model", SS_OPT_STR, &o.model, "checkpoint or engine folder (default: the bundled model)"},
        {"prompt", SS_OPT_STR, &o.prompt, "prompt text (BOS added as the tokenizer says)"},
        {"prompt-ids", SS_OPT_STR, &o.prompt_ids, "prompt token ids, e.g. 1,2,3"},
        {"chat", SS_OPT_STR, &o.chat, "JSON file of chat messages, rendered with the chat template"},
        {"max-tokens", SS_OPT_INT, &o.max_tokens, "tokens to generate (default 32)"},
        {"temperature", SS_OPT_FLOAT, &o.temperature, "0 = greedy (default)"},
        {"top-k", SS_OPT_INT, &o.top_k, "sample among the k most likely (0 = off)"},
        {"top-p", SS_OPT_FLOAT, &o.top_p, "nucleus sampling mass (1 = off)"},
        {"min-p", SS_OPT_FLOAT, &o.min_p, "drop tokens below min-p x the top probability"},
        {"seed", SS_OPT_INT, &o.seed, "random seed for sampling"},
        {"logprobs", SS_OPT_INT, &o.logprobs, "top-K log-probabilities per generated token (json output)"},
        {"ignore-eos", SS_OPT_BOOL, &o.ignore_eos, "keep generating after an end-of-sequence token"},
        {"json-mode", SS_OPT_BOOL, &o.json_mode, "the output is one JSON object (ends when it closes)"},
        {"json-schema", SS_OPT_STR, &o.json_schema, "file of a JSON schema the output object follows (JSON mode)"},
        {"output", SS_OPT_STR, &o.output, "text | json"},
        {"device", SS_OPT_STR, &o.device, "auto | cpu | cuda"},
        {"tp", SS_OPT_INT, &o.tp, "tensor-parallel degree (default: the engine's, else 1)"},
        {"pp", SS_OPT_INT, &o.pp, "pipeline-parallel degree (default: the engine's, else 1)"},
        {"kv-cache-dtype", SS_OPT_STR, &o.kv_dtype, SS_KV_DTYPE_HELP},
        {"quantization", SS_OPT_STR, &o.quant, SS_QUANT_HELP},
        {"threads", SS_OPT_INT, &o.threads, "cpu threads (0 = all cores)"},
        {"nnodes", SS_OPT_INT, &o.nnodes, "machines in the replica (default 1)"},
        {"node-rank", SS_OPT_INT, &o.node_rank, "this machine's index (0 = the leader's)"},
        {"gpus-per-node", SS_OPT_INT, &o.gpus_per_node, "ranks per machine (default tp x pp / nnodes)"},
        {"leader-addr", SS_OPT_STR, &o.leader_addr, "HOST:PORT where rank 0 meets the others"},
        {"rendezvous-port", SS_OPT_INT, &o.rdzv_port, "port for LeaderWorkerSet / MPI rendezvous (default 29500)"},
        {"join-timeout", SS_OPT_INT, &o.join_timeout,
         "a node other than the leader's: seconds to keep trying to reach the leader, which prepares the engine first"},
        {"comm-timeout", SS_OPT_INT, &o.comm_timeout, "seconds before a silent rank fails a step (default 60)"},
        {"quiet", SS_OPT_BOOL, &o.quiet, "log warnings and errors only"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "generate", &e);
    const ss_opts_src src = {opts, argc, argv, 2, env};
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st != SS_OK)
        return gen_fail(&src, st, &e);
    ss_log_init(o.quiet ? SS_LOG_WARN : SS_LOG_INFO, "");
    int json = !strcmp(o.output, "json");
    if (!json && strcmp(o.output, "text"))
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--output must be text or json, not '%s'", o.output), &e);
    if (!!o.prompt + !!o.prompt_ids + !!o.chat != 1)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "give exactly one of --prompt, --prompt-ids, --chat"), &e);
    if (o.max_tokens < 1 || o.max_tokens > 1 << 20)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--max-tokens must be in 1..%d (got %lld)", 1 << 20,
                                   (long long)o.max_tokens), &e);
    if (o.join_timeout < 1 || o.join_timeout > SS_CLI_JOIN_TIMEOUT_MAX)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--join-timeout must be in 1..%d seconds (got %lld)",
                                         SS_CLI_JOIN_TIMEOUT_MAX, (long long)o.join_timeout), &e);
    if (o.comm_timeout < 1 || o.comm_timeout > 86400)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--comm-timeout must be in 1..86400 seconds"), &e);
    if (o.logprobs < 0 || o.logprobs > SS_MAX_TOP_LOGPROBS)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--logprobs must be in 0..%d", SS_MAX_TOP_LOGPROBS), &e);
    /* the ranges of the HTTP API's fields (api_openai.c) */
    if (!(o.temperature >= 0 && o.temperature <= 100) || !(o.top_p > 0 && o.top_p <= 1) ||
        !(o.min_p >= 0 && o.min_p <= 1))
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG,
                                   "--temperature must be in [0, 100], --top-p in (0, 1] and --min-p in [0, 1]"),
                        &e);
    if (o.top_k < -1 || o.top_k > INT32_MAX)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--top-k must be -1 or 0 (off), or a count of tokens"), &e);
    if (o.top_k < 0)
        o.top_k = 0;
    char model_dir[4096];
    if (o.logprobs > 0 && !json)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG,
                                   "--logprobs needs --output json (text output has no place "
                                   "for them)"),
                        &e);
    if (o.model) {
        if (!ss_path_exists(o.model))
            return gen_fail(&src, ss_err_set(&e, SS_ERR_NOT_FOUND, "--model %s: no such folder", o.model), &e);
        snprintf(model_dir, sizeof model_dir, "%s", o.model);
    } else if ((st = ss_default_model_dir(model_dir, sizeof model_dir, &e)) != SS_OK) {
        return gen_fail(&src, st, &e);
    }
    if ((st = ss_cli_engine_layout(model_dir, 0, &o.tp, &o.pp, NULL, 0, &e)) != SS_OK)
        return gen_fail(&src, st, &e);
    if (o.tp < 1 || o.pp < 1 || o.tp > 64 || o.pp > 64 || o.tp * o.pp > 64) /* (each bounded first: no overflow) */
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--tp and --pp must be >= 1 with tp x pp <= 64"), &e);
    if (o.threads < 0 || o.threads > 4096)
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--threads must be in 0..4096 (0 = all cores)"), &e);
    ss_rank_info ri;
    st = ss_rank_discover(env, (int)o.tp, (int)o.pp, (int)o.nnodes, (int)o.node_rank, (int)o.gpus_per_node,
                          o.leader_addr, (int)o.rdzv_port, &ri, &e);
    if (st != SS_OK)
        return gen_fail(&src, st, &e);
    if (ri.rank != 0)
        return ss_cli_run_node(&ri, o.join_timeout);
    ss_replica_params rp = ss_replica_default_params();
    rp.model_dir = model_dir;
    rp.tp = (int)o.tp;
    rp.pp = (int)o.pp;
    rp.leader_addr = ri.leader_addr[0] ? ri.leader_addr : NULL;
    rp.gpus_per_node = ri.gpus_per_node;
    rp.local_ranks = ri.per_process ? 1 : 0;
    rp.comm_timeout_ms = (int)(o.comm_timeout * 1000);
    rp.backend.n_threads = (int)o.threads;
    if (!strcmp(o.device, "cpu"))
        rp.backend.device = SS_DEVICE_CPU;
    else if (!strcmp(o.device, "cuda"))
        rp.backend.device = SS_DEVICE_CUDA;
    else if (strcmp(o.device, "auto"))
        return gen_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--device must be auto, cpu or cuda"), &e);
    if (ss_kv_type_parse(o.kv_dtype, &rp.backend.kv_type, &e) != SS_OK ||
        ss_linear_type_parse(o.quant, &rp.backend.linear_type, &e) != SS_OK)
        return gen_fail(&src, SS_ERR_INVALID_ARG, &e);

    ss_tokenizer *tok = NULL;
    ss_replica *rep = NULL;
    ss_detok *dt = NULL;
    int32_t *prompt = NULL, *gen = NULL, *blocks = NULL;
    int32_t n_prompt = 0, n_gen = 0;
    cJSON *out = NULL, *lp_arr = NULL;
    gen_guide guide;
    memset(&guide, 0, sizeof guide);
    const int guided = o.json_mode || o.json_schema;
    const char *finish = "length";
    char tok_json[4200];
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", model_dir);
    if (o.prompt || o.chat || ss_path_exists(tok_json)) {
        st = ss_tokenizer_load(model_dir, &tok, &e);
        if (st != SS_OK && (o.prompt || o.chat))
            goto done;
        st = SS_OK;
    }
    if (o.prompt_ids) {
        SS_CHECK_GOTO(gen_parse_ids(o.prompt_ids, &prompt, &n_prompt, &e), st, done);
    } else if (o.chat) {
        SS_CHECK_GOTO(gen_chat_ids(tok, o.chat, &prompt, &n_prompt, &e), st, done);
    } else {
        assert(o.prompt); /* exactly one of the three (checked above) */
        size_t nn = 0;
        SS_CHECK_GOTO(ss_tokenizer_encode(tok, o.prompt, strlen(o.prompt), 1, &prompt, &nn, &e), st, done);
        n_prompt = (int32_t)nn;
        if (!n_prompt) {
            st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--prompt encodes to no tokens");
            goto done;
        }
    }
    SS_CHECK_GOTO(ss_replica_create(&rp, &rep, &e), st, done);
    const ss_model_config *cfg = ss_replica_config(rep);
    int32_t max_len = ss_replica_max_seq_len(rep), bs = ss_replica_block_size(rep);
    if (n_prompt + 1 > max_len) {
        st =
            ss_err_set(&e, SS_ERR_INVALID_ARG, "prompt of %d tokens does not fit the context of %d", n_prompt, max_len);
        goto done;
    }
    int64_t total = n_prompt + o.max_tokens;
    if (total > max_len) {
        SS_LOGW("--max-tokens %lld does not fit the context of %d after the %d-token prompt: at most %lld tokens",
                (long long)o.max_tokens, max_len, n_prompt, (long long)(max_len - n_prompt));
        total = max_len;
    }
    int32_t nb = (int32_t)((total + bs - 1) / bs);
    if (nb > ss_replica_num_kv_blocks(rep)) {
        st = ss_err_set(&e, SS_ERR_CAPACITY, "%lld tokens need %d KV blocks; the cache has %d", (long long)total, nb,
                        ss_replica_num_kv_blocks(rep));
        goto done;
    }
    blocks = ss_malloc((size_t)nb * sizeof *blocks);
    gen = ss_malloc((size_t)o.max_tokens * sizeof *gen);
    if (!blocks || !gen) {
        st = ss_err_set(&e, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < nb; i++)
        blocks[i] = i;
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] >= cfg->vocab_size) {
            st = ss_err_set(&e, SS_ERR_INVALID_ARG, "prompt id %d is outside the vocabulary of %d", prompt[i],
                            cfg->vocab_size);
            goto done;
        }
    if (tok && !json)
        SS_CHECK_GOTO(ss_detok_create(tok, 1, &dt, &e), st, done); /* people read text without <|eos|> */
    if (guided)
        SS_CHECK_GOTO(gen_guide_start(&guide, o.json_schema, tok, cfg->vocab_size, &e), st, done);
    if (json) {
        out = cJSON_CreateObject();
        lp_arr = o.logprobs ? cJSON_AddArrayToObject(out, "logprobs") : NULL;
    }
    ss_plan_seq q;
    memset(&q, 0, sizeof q);
    q.blocks = blocks;
    q.n_blocks = nb;
    q.sp = ss_sampling_default();
    q.sp.temperature = (float)o.temperature;
    q.sp.top_k = (int32_t)o.top_k;
    q.sp.top_p = (float)o.top_p;
    q.sp.min_p = (float)o.min_p;
    q.sp.seed = (uint64_t)o.seed;
    q.sp.n_logprobs = (int32_t)o.logprobs;
    if (guided) { /* the mask is remade after each token, in place */
        q.n_allow = ss_guide_vocab_words(guide.vocab);
        q.allow = guide.g.allow;
    }
    int32_t chunk = 2048, pos = 0;
    int32_t last = 0;
    uint64_t step = 0;
    /* Prefill in chunks, sampling after the last one; then one token per step. */
    while (pos < n_prompt || n_gen < o.max_tokens) {
        int32_t *ids;
        q.pos_start = pos;
        if (pos < n_prompt) {
            q.n_tokens = n_prompt - pos < chunk ? n_prompt - pos : chunk;
            ids = prompt + pos;
        } else {
            if (pos + 1 > max_len) {
                finish = "length";
                break;
            }
            q.n_tokens = 1;
            ids = &last;
        }
        q.sample = pos + q.n_tokens >= n_prompt;
        q.rng_counter = (uint64_t)n_gen;
        ss_step_plan plan = {step++, 0, 1, &q, q.n_tokens, ids};
        ss_step_output so;
        SS_CHECK_GOTO(ss_replica_step(rep, &plan, &so, &e), st, done);
        pos += q.n_tokens;
        if (!q.sample) {
            ss_step_output_clear(&so);
            continue;
        }
        last = so.token[0];
        gen[n_gen++] = last;
        if (lp_arr) {
            cJSON *stepj = cJSON_CreateArray();
            for (int32_t k = 0; k < so.n_top; k++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddNumberToObject(x, "id", so.top_ids[k]);
                cJSON_AddNumberToObject(x, "logprob", so.top_logprobs[k]);
                cJSON_AddItemToArray(stepj, x);
            }
            cJSON_AddItemToArray(lp_arr, stepj);
        }
        ss_step_output_clear(&so);
        if (dt) {
            const char *piece;
            size_t pl;
            SS_CHECK_GOTO(ss_detok_push(dt, last, &piece, &pl, &e), st, done);
            fwrite(piece, 1, pl, stdout);
            fflush(stdout);
        }
        if (guided)
            SS_CHECK_GOTO(ss_guide_advance(&guide.g, guide.vocab, last, &e), st, done);
        if ((guided && ss_guide_done(&guide.g)) || (!o.ignore_eos && gen_is_eos(cfg, last))) {
            finish = "stop";
            break;
        }
    }
    if (dt) {
        const char *piece;
        size_t pl;
        SS_CHECK_GOTO(ss_detok_flush(dt, &piece, &pl, &e), st, done);
        fwrite(piece, 1, pl, stdout);
        fputc('\n', stdout);
    } else if (!json) {
        for (int32_t i = 0; i < n_gen; i++)
            printf("%s%d", i ? "," : "", gen[i]);
        printf("\n");
    }
    if (json) {
        cJSON *pa = cJSON_AddArrayToObject(out, "prompt_ids");
        for (int32_t i = 0; i < n_prompt; i++)
            cJSON_AddItemToArray(pa, cJSON_CreateNumber(prompt[i]));
        cJSON *ga = cJSON_AddArrayToObject(out, "ids");
        for (int32_t i = 0; i < n_gen; i++)
            cJSON_AddItemToArray(ga, cJSON_CreateNumber(gen[i]));
        if (tok) {
            char *text = NULL;
            size_t tl = 0;
            SS_CHECK_GOTO(ss_tokenizer_decode(tok, gen, (size_t)n_gen, 0, &text, &tl, &e), st, done);
            cJSON_AddStringToObject(out, "text", text);
            ss_free(text);
        } else {
            cJSON_AddNullToObject(out, "text");
        }
        cJSON_AddStringToObject(out, "finish_reason", finish);
        char *s = cJSON_PrintUnformatted(out);
        if (s) {
            printf("%s\n", s);
            free(s);
        }
    }
done:
    cJSON_Delete(out);
    ss_detok_destroy(dt);
    gen_guide_free(&guide);
    ss_free(prompt);
    ss_free(gen);
    ss_free(blocks);
    ss_replica_destroy(rep);
    ss_tokenizer_destroy(tok);
    if (st != SS_OK)
        return gen_fail(&src, st, &e);
    return SS_EXIT_OK;
}
