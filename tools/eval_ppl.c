/* eval_ppl.c — held-out perplexity of a model on a text file, through a replica (any device, tp × pp, weight
 * and KV formats): the check of a quantisation's quality on real weights before serving it that way.
 * usage: eval_ppl --model DIR --text FILE [--window 256] [--batch 8] [--max-windows N] [--device cuda]
 *        [--tp T --pp P] [--quantization none|fp8] [--kv-cache-dtype auto|fp8] [--json] [--verbose]
 * The text's documents are separated by blank lines; each is encoded with the tokenizer's special tokens and
 * ends in the end-of-sequence token, and the documents make one stream. The stream is cut into consecutive
 * windows of --window tokens whose first position is set to the beginning-of-sequence token; every token after
 * the stream's first is predicted once (the tail makes a shorter window). This is the held-out measurement of
 * tools/demo-model/train.py, so the bundled demo model's golden.json perplexity is reproducible with it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/opts.h"
#include "core/alloc.h"
#include "core/fileio.h"
#include "core/log.h"
#include "runner/replica.h"
#include "tokenizer/tokenizer.h"
#include "tool_replica.h"

extern char **environ;

typedef struct ep_stream {
    int32_t *ids; /* owned */
    size_t n, cap;
    size_t text_bytes; /* UTF-8 bytes of the documents (for bits per byte) */
} ep_stream;

static int ep_push(ep_stream *s, const int32_t *ids, size_t n)
{
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->n + n)
            cap *= 2;
        int32_t *p = ss_realloc(s->ids, cap * sizeof *p);
        if (!p)
            return -1;
        s->ids = p;
        s->cap = cap;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    s->n += n;
    return 0;
}

/* The documents of text (separated by blank lines, stripped of surrounding newlines), encoded. */
static ss_status ep_encode(const ss_tokenizer *tok, char *text, size_t len, int32_t eos, ep_stream *s, ss_err *err)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && !(text[end] == '\n' && end + 1 < len && text[end + 1] == '\n'))
            end++;
        size_t a = i, b = end;
        while (a < b && text[a] == '\n')
            a++;
        while (b > a && text[b - 1] == '\n')
            b--;
        int blank = 1;
        for (size_t j = a; j < b && blank; j++)
            blank = strchr(" \t\r\n\v\f", text[j]) != NULL;
        if (!blank) {
            int32_t *ids = NULL;
            size_t n = 0;
            SS_CHECK(ss_tokenizer_encode(tok, text + a, b - a, 1, &ids, &n, err));
            int r = ep_push(s, ids, n);
            if (r == 0 && (n == 0 || ids[n - 1] != eos))
                r = ep_push(s, &eos, 1);
            ss_free(ids);
            if (r != 0)
                return ss_err_set(err, SS_ERR_NOMEM, "encoding the text: out of memory");
            s->text_bytes += b - a;
        }
        i = end + 2;
    }
    return SS_OK;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *text_path = NULL;
    tool_replica_opts ro = TOOL_REPLICA_DEFAULTS;
    int64_t window = 256, batch = 8, max_windows = 0, json = 0, verbose = 0;
    ss_opt opts[] = {
        {"model", SS_OPT_STR, &model, "checkpoint or engine folder (with its tokenizer)"},
        {"text", SS_OPT_STR, &text_path, "UTF-8 text, documents separated by blank lines"},
        {"window", SS_OPT_INT, &window, "tokens a window (its first is set to the BOS token)"},
        {"batch", SS_OPT_INT, &batch, "windows a step"},
        {"max-windows", SS_OPT_INT, &max_windows, "stop after this many windows (0: the whole text)"},
        TOOL_REPLICA_OPTIONS(ro),
        {"json", SS_OPT_BOOL, &json, "print one JSON line"},
        {"verbose", SS_OPT_BOOL, &verbose, "info-level log lines on stderr"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_replica_params p;
    ss_status st = ss_opts_parse(opts, argc, argv, 1, environ, "eval_ppl", &e);
    if (st == SS_OK && (!model || !text_path))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--model and --text are required");
    if (st == SS_OK && (window < 2 || window > 8192))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--window must be 2..8192 (got %lld)", (long long)window);
    if (st == SS_OK && (batch < 1 || batch > 256))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--batch must be 1..256 (got %lld)", (long long)batch);
    if (st == SS_OK)
        st = tool_replica_params(&ro, model, &p, &e);
    if (st != SS_OK) {
        fprintf(stderr, "eval_ppl: %s\n", e.msg);
        return 2;
    }
    ss_log_init(verbose ? SS_LOG_INFO : SS_LOG_WARN, "");

    ss_tokenizer *tok = NULL;
    if ((st = ss_tokenizer_load(model, &tok, &e)) != SS_OK) {
        fprintf(stderr, "eval_ppl: tokenizer of %s: %s\n", model, e.msg);
        return 2;
    }
    const char *bos_s = ss_tokenizer_bos_token(tok), *eos_s = ss_tokenizer_eos_token(tok);
    const int32_t bos = bos_s ? ss_tokenizer_token_to_id(tok, bos_s) : -1;
    const int32_t eos = eos_s ? ss_tokenizer_token_to_id(tok, eos_s) : -1;
    if (bos < 0 || eos < 0) {
        fprintf(stderr, "eval_ppl: the tokenizer of %s names no %s token\n", model, bos < 0 ? "bos" : "eos");
        return 2;
    }
    char *text = NULL;
    size_t text_len = 0;
    ep_stream s = {0};
    if ((st = ss_read_file(text_path, (size_t)1 << 32, &text, &text_len, &e)) == SS_OK)
        st = ep_encode(tok, text, text_len, eos, &s, &e);
    ss_free(text);
    ss_tokenizer_destroy(tok);
    if (st == SS_OK && s.n < 2)
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "the text %s has fewer than 2 tokens", text_path);
    if (st != SS_OK) {
        fprintf(stderr, "eval_ppl: %s\n", e.msg);
        ss_free(s.ids);
        return 2;
    }

    const int32_t bs = 16, nb = (int32_t)((window + bs - 1) / bs);
    p.block_size = bs;
    p.max_seq_len = nb * bs;
    p.num_kv_blocks = nb * (int32_t)batch;
    p.max_batch_tokens = (int32_t)(window * batch);
    p.max_seqs = (int32_t)(window * batch); /* the all-logits rows of a step */
    p.no_graphs = 1;                        /* prefill only */
    ss_replica *r = NULL;
    if ((st = ss_replica_create(&p, &r, &e)) != SS_OK) {
        fprintf(stderr, "eval_ppl: %s\n", e.msg);
        ss_free(s.ids);
        return 3;
    }
    const int32_t V = ss_replica_config(r)->vocab_size;
    ss_plan_seq *q = ss_calloc((size_t)batch, sizeof *q);
    int32_t *blocks = ss_malloc((size_t)batch * (size_t)nb * sizeof *blocks);
    int32_t *toks = ss_malloc((size_t)(window * batch) * sizeof *toks);
    if (!q || !blocks || !toks) {
        fprintf(stderr, "eval_ppl: out of memory\n");
        return 3;
    }
    for (int64_t b = 0; b < batch; b++) {
        q[b].seq_id = (uint64_t)b;
        q[b].blocks = blocks + b * nb;
        q[b].n_blocks = nb;
        q[b].sp = ss_sampling_default();
        for (int32_t i = 0; i < nb; i++)
            q[b].blocks[i] = (int32_t)(b * nb + i);
    }
    /* Window w predicts stream[start + 1 .. start + len] from stream[start .. start + len - 1], its first
     * input replaced by BOS; start = w * window. */
    const size_t predicted_all = s.n - 1;
    double nll = 0.0;
    size_t count = 0, windows = 0, start = 0;
    uint64_t step = 0;
    int is_tty = isatty(2);
    while (start < predicted_all && (max_windows == 0 || (int64_t)windows < max_windows)) {
        int32_t nw = 0, n_tok = 0;
        size_t starts[256], lens[256];
        while (nw < batch && start < predicted_all && (max_windows == 0 || (int64_t)(windows + nw) < max_windows)) {
            const size_t len = predicted_all - start < (size_t)window ? predicted_all - start : (size_t)window;
            starts[nw] = start, lens[nw] = len;
            q[nw].pos_start = 0;
            q[nw].n_tokens = (int32_t)len;
            q[nw].sample = 0;
            memcpy(toks + n_tok, s.ids + start, len * sizeof *toks);
            toks[n_tok] = bos;
            n_tok += (int32_t)len;
            start += len;
            nw++;
        }
        ss_step_plan plan = {step++, SS_PLAN_ALL_LOGITS, nw, q, n_tok, toks};
        ss_step_output out;
        if ((st = ss_replica_step(r, &plan, &out, &e)) != SS_OK) {
            fprintf(stderr, "eval_ppl: window %zu: %s\n", windows, e.msg);
            return 1;
        }
        if (out.logits_rows != n_tok || out.vocab != V) {
            fprintf(stderr, "eval_ppl: the step returned %lld logits rows of %d, expected %d of %d\n",
                    (long long)out.logits_rows, out.vocab, n_tok, V);
            return 1;
        }
        int64_t row = 0;
        for (int32_t w = 0; w < nw; w++)
            for (size_t i = 0; i < lens[w]; i++, row++) {
                const float *lg = out.logits + row * V;
                float mx = lg[0];
                for (int32_t v = 1; v < V; v++)
                    mx = lg[v] > mx ? lg[v] : mx;
                double z = 0.0;
                for (int32_t v = 0; v < V; v++)
                    z += exp((double)lg[v] - mx);
                const int32_t y = s.ids[starts[w] + i + 1];
                nll += log(z) + mx - (double)lg[y];
                count++;
            }
        ss_step_output_clear(&out);
        windows += (size_t)nw;
        if (is_tty && (step % 8 == 0 || start >= predicted_all))
            fprintf(stderr, "\reval_ppl: %zu / %zu tokens (%.1f%%), perplexity so far %.4f", count, predicted_all,
                    100.0 * (double)count / (double)predicted_all, exp(nll / (double)count));
        else if (!is_tty && step % 64 == 0)
            SS_LOGI("eval_ppl: %zu / %zu tokens, perplexity so far %.4f", count, predicted_all,
                    exp(nll / (double)count));
    }
    if (is_tty)
        fprintf(stderr, "\n");
    const double loss = nll / (double)count, ppl = exp(loss);
    const double bpb = count == predicted_all ? nll / log(2.0) / (double)s.text_bytes : NAN;
    if (json)
        printf("{\"model\":\"%s\",\"quantization\":\"%s\",\"kv_cache_dtype\":\"%s\",\"tokens_predicted\":%zu,"
               "\"windows\":%zu,\"window\":%lld,\"loss\":%.6f,\"perplexity\":%.4f,\"bits_per_byte\":%.4f}\n",
               model, ss_linear_type_name(ss_replica_linear_type(r)), ss_kv_type_name(p.backend.kv_type), count, windows, (long long)window,
               loss, ppl, isnan(bpb) ? -1.0 : bpb);
    else
        printf("%zu tokens predicted in %zu windows of %lld: loss %.6f nats/token, perplexity %.4f\n", count,
               windows, (long long)window, loss, ppl);
    if (!json && !isnan(bpb))
        printf("bits per byte %.4f over %zu bytes of text\n", bpb, s.text_bytes);
    ss_free(q);
    ss_free(blocks);
    ss_free(toks);
    ss_free(s.ids);
    ss_replica_destroy(r);
    return 0;
}
