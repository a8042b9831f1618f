/* gen_request.c — a generation request as the scheduler takes it: what it may hold (checked against the
 * model's vocabulary, context and tokenizer before it is queued) and how it is freed. */
#include <math.h>

#include "core/alloc.h"
#include "serve/sched.h"

void ss_gen_request_free(ss_gen_request *req)
{
    if (!req)
        return;
    ss_free(req->prompt);
    ss_free(req->stop_ids);
    ss_free(req->bias_ids);
    ss_free(req->bias_vals);
    for (int32_t i = 0; i < SS_MAX_STOP_STRINGS; i++)
        ss_free(req->stop[i]);
    if (req->bad_words)
        for (int32_t i = 0; i < req->n_bad_words; i++)
            ss_free(req->bad_words[i]);
    ss_free(req->bad_words);
    ss_free(req->bad_word_lens);
    ss_json_schema_destroy(req->json_schema);
    ss_free(req);
}

ss_status ss_gen_request_check(const ss_gen_request *q, int32_t vocab, int32_t max_seq_len, int have_tokenizer,
                               ss_err *err)
{
    if (q->n_prompt < 1 || !q->prompt)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "prompt is empty");
    if (q->max_tokens < 1)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "max_tokens must be at least 1 (got %d)", (int)q->max_tokens);
    if ((int64_t)q->n_prompt + 1 > max_seq_len)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "prompt has %d tokens; the context holds %d, including at least one generated token",
                          (int)q->n_prompt, (int)max_seq_len);
    /* (the context is at most what the KV cache holds: ss_replica_max_seq_len) */
    for (int32_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= vocab)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "prompt token %d at position %d is outside the vocabulary (%d)",
                              (int)q->prompt[i], (int)i, (int)vocab);
    if (q->n_stop < 0 || q->n_stop > SS_MAX_STOP_STRINGS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%d stop strings (at most %d)", (int)q->n_stop, SS_MAX_STOP_STRINGS);
    if (q->n_stop > 0 && !have_tokenizer)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "stop strings need a tokenizer; this model has none");
    if (q->n_stop_ids < 0 || (q->n_stop_ids > 0 && !q->stop_ids))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "bad stop id list");
    if (q->n_bias < 0 || q->n_bias > SS_MAX_LOGIT_BIAS || (q->n_bias > 0 && (!q->bias_ids || !q->bias_vals)))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "bad logit_bias list (%d entries, at most %d)", (int)q->n_bias,
                          SS_MAX_LOGIT_BIAS);
    for (int32_t i = 0; i < q->n_bias; i++)
        if (q->bias_ids[i] < 0 || q->bias_ids[i] >= vocab || !isfinite(q->bias_vals[i]))
            return ss_err_set(err, SS_ERR_INVALID_ARG, "logit_bias entry %d: token %d outside the vocabulary (%d) or "
                              "bias not finite", (int)i, (int)q->bias_ids[i], (int)vocab);
    if (q->n_bad_words < 0 || (q->n_bad_words > 0 && (!q->bad_words || !q->bad_word_lens)))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "bad bad_words list");
    for (int32_t w = 0; w < q->n_bad_words; w++) {
        if (q->bad_word_lens[w] < 0 || (q->bad_word_lens[w] > 0 && !q->bad_words[w]))
            return ss_err_set(err, SS_ERR_INVALID_ARG, "bad word %d: bad length", (int)w);
        for (int32_t i = 0; i < q->bad_word_lens[w]; i++)
            if (q->bad_words[w][i] < 0 || q->bad_words[w][i] >= vocab)
                return ss_err_set(err, SS_ERR_INVALID_ARG, "bad word %d: token %d is outside the vocabulary (%d)",
                                  (int)w, (int)q->bad_words[w][i], (int)vocab);
    }
    if (q->sp.n_logprobs < 0 || q->sp.n_logprobs > SS_MAX_TOP_LOGPROBS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "logprobs %d outside 0..%d", (int)q->sp.n_logprobs,
                          SS_MAX_TOP_LOGPROBS);
    if (q->json_schema && !q->json_mode)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "a JSON schema without JSON mode");
    if (q->json_mode && !have_tokenizer)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "JSON mode needs a tokenizer; this model has none");
    if (q->json_mode && q->min_tokens > 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "min_tokens (%d) cannot be combined with JSON mode, which ends when the object closes",
                          (int)q->min_tokens);
    return SS_OK;
}
