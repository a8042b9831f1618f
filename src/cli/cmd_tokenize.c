/* cmd_tokenize.c — `shardserve tokenize`: text on stdin -> JSON array of token ids on stdout, or with
 * --decode a JSON array of ids on stdin -> the decoded text, byte for byte (no newline added). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/opts.h"
#include "core/alloc.h"
#include "core/json_num.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* Reads all of stdin (at most SS_TOKENIZER_MAX_TEXT bytes); *out caller ss_free's. */
static ss_status tokenize_read_stdin(char **out, size_t *len, ss_err *err)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = ss_malloc(cap + 1);
    if (!buf)
        return ss_err_set(err, SS_ERR_NOMEM, "stdin: out of memory");
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            if (cap >= SS_TOKENIZER_MAX_TEXT) {
                ss_free(buf);
                return ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: more than %zu bytes", SS_TOKENIZER_MAX_TEXT);
            }
            char *p = ss_realloc(buf, cap * 2 + 1);
            if (!p) {
                ss_free(buf);
                return ss_err_set(err, SS_ERR_NOMEM, "stdin: out of memory");
            }
            buf = p;
            cap *= 2;
        }
    }
    if (ferror(stdin)) {
        ss_free(buf);
        return ss_err_set(err, SS_ERR_IO, "stdin: read error");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SS_OK;
}

static ss_status tokenize_encode(const ss_tokenizer *tok, const char *text, size_t len, int add_special, ss_err *err)
{
    int32_t *ids;
    size_t n;
    SS_CHECK(ss_tokenizer_encode(tok, text, len, add_special, &ids, &n, err));
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++)
        fprintf(stdout, i ? ", %d" : "%d", ids[i]);
    fputs("]\n", stdout);
    ss_free(ids);
    return SS_OK;
}

static ss_status tokenize_decode(const ss_tokenizer *tok, const char *json, size_t len, int skip_special, ss_err *err)
{
    /* cJSON reads a NUL as white space and stops after the first value: neither may pass for an array of ids */
    const char *end = NULL;
    cJSON *arr = memchr(json, '\0', len) ? NULL : cJSON_ParseWithLengthOpts(json, len, &end, 0);
    while (arr && end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (arr && end != json + len) {
        cJSON_Delete(arr);
        return ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: data after the JSON array of token ids (at byte %zu)",
                          (size_t)(end - json));
    }
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: expected a JSON array of token ids");
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    int32_t *ids = ss_malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cJSON_Delete(arr);
        return ss_err_set(err, SS_ERR_NOMEM, "stdin: out of memory");
    }
    const cJSON *v;
    ss_status st = SS_OK;
    cJSON_ArrayForEach(v, arr)
    {
        if (!ss_json_i32(v, INT32_MIN, INT32_MAX, &ids[i])) {
            st = ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: element %zu is not an integer token id", i);
            break;
        }
        i++;
    }
    cJSON_Delete(arr);
    char *text = NULL;
    size_t tlen = 0;
    if (st == SS_OK)
        st = ss_tokenizer_decode(tok, ids, n, skip_special, &text, &tlen, err);
    if (st == SS_OK && fwrite(text, 1, tlen, stdout) != tlen)
        st = ss_err_set(err, SS_ERR_IO, "stdout: write error");
    ss_free(text);
    ss_free(ids);
    return st;
}

int ss_cmd_tokenize(int argc, char **argv, char **env)
{
    const char *model = NULL, *file = NULL;
    int add_special = 0, decode = 0, skip_special = 0;
    const ss_opt opts[] = {
        {"model", SS_OPT_STR, &model,
         "checkpoint folder holding tokenizer.json (+ tokenizer_config.json; default: the bundled model)"},
        {"tokenizer", SS_OPT_STR, &file, "a tokenizer.json file (instead of --model)"},
        {"add-special", SS_OPT_BOOL, &add_special, "apply the post-processor (BOS etc.) when encoding"},
        {"decode", SS_OPT_BOOL, &decode, "read a JSON array of ids and print the decoded text"},
        {"skip-special", SS_OPT_BOOL, &skip_special, "with --decode: drop special tokens"},
        {NULL, 0, NULL, NULL},
    };
    ss_err err = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "tokenize", &err);
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st == SS_OK && model && file)
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "give --model DIR or --tokenizer FILE, not both");
    if (st != SS_OK) {
        fprintf(stderr, "shardserve tokenize: %s\n", err.msg);
        return SS_EXIT_USAGE;
    }
    char default_dir[4096];
    if (!model && !file) {
        if ((st = ss_default_model_dir(default_dir, sizeof default_dir, &err)) != SS_OK) {
            fprintf(stderr, "shardserve tokenize: %s\n", err.msg);
            return ss_status_exit_code(st);
        }
        model = default_dir;
    }
    ss_tokenizer *tok = NULL;
    char *input = NULL;
    size_t len = 0;
    st = model ? ss_tokenizer_load(model, &tok, &err) : ss_tokenizer_load_files(file, NULL, &tok, &err);
    if (st == SS_OK)
        st = tokenize_read_stdin(&input, &len, &err);
    if (st == SS_OK)
        st = decode ? tokenize_decode(tok, input, len, skip_special, &err)
                    : tokenize_encode(tok, input, len, add_special, &err);
    if (st == SS_OK && fflush(stdout) != 0)
        st = ss_err_set(&err, SS_ERR_IO, "stdout: write error");
    ss_free(input);
    ss_tokenizer_destroy(tok);
    if (st != SS_OK) {
        fprintf(stderr, "shardserve tokenize: %s\n", err.msg);
        /* bad text or ids on stdin is bad input, not a usage error */
        return st == SS_ERR_INVALID_ARG ? SS_EXIT_BAD_INPUT : ss_status_exit_code(st);
    }
    return SS_EXIT_OK;
}
