/* api_triton.h — the Triton / KServe v2 generate API as pure functions: the TensorRT-LLM ensemble's
 * request fields (top level or inside "parameters") into ss_api_request, results into response JSON,
 * plus the v2 metadata documents. */
#ifndef SS_API_TRITON_H
#define SS_API_TRITON_H

#include "serve/api_common.h"

/* Parses a /v2/models/{m}/generate[_stream] body. stream_endpoint = 1 forces stream on.
 * out is initialized here; on error it is cleared and e says why (400 naming the field). */
ss_status ss_api_triton_parse(const char *body, size_t len, int stream_endpoint, const ss_api_limits *lim,
                              ss_api_request *out, ss_api_error *e);

/* {"model_name","model_version","text_output"[,"output_log_probs","cum_log_probs"]}; caller ss_frees. */
char *ss_api_triton_response_json(const char *model, const ss_api_choice *c, int return_log_probs, size_t *len);
/* One generate_stream event: the text piece of one token (lp may be NULL), cum_log_prob so far. */
char *ss_api_triton_chunk_json(const char *model, const char *text, size_t text_len, const ss_api_token_lp *lp,
                               double cum_log_prob, int return_log_probs, size_t *len);
/* GET /v2 */
char *ss_api_triton_server_json(const char *version, size_t *len);
/* GET /v2/models/{m} */
char *ss_api_triton_model_json(const char *model, size_t *len);

#endif
