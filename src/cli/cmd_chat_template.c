/* cmd_chat_template.c — `shardserve chat-template`: renders a model's chat template for messages read
 * from stdin and prints the prompt exactly (no added newline), so users can debug templates. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/opts.h"
#include "core/alloc.h"
#include "core/fileio.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

#define CT_MAX_STDIN ((size_t)64 << 20)

typedef struct ct_opts {
    const char *model, *template_file, *bos, *eos;
    int no_generation_prompt;
} ct_opts;

/* Reads all of stdin (caller ss_free's *out). */
static ss_status ct_read_stdin(char **out, size_t *len, ss_err *err)
{
    size_t cap = 65536, n = 0;
    char *buf = ss_malloc(cap);
    if (!buf)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory reading stdin");
    for (;;) {
        if (n + 1 == cap) {
            if (cap >= CT_MAX_STDIN) {
                ss_free(buf);
                return ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: messages larger than %zu bytes", CT_MAX_STDIN);
            }
            char *nb = ss_realloc(buf, cap * 2);
            if (!nb) {
                ss_free(buf);
                return ss_err_set(err, SS_ERR_NOMEM, "out of memory reading stdin");
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, stdin);
        n += got;
        if (got == 0)
            break;
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

/* An object on stdin is used as the variables themselves ({"messages": [...], "tools": [...], ...}), with
 * add_generation_prompt/bos_token/eos_token/tools/documents filled in where it lacks them. */
static ss_status ct_fill_vars(cJSON *vars, int add_generation_prompt, const char *bos, const char *eos, ss_err *err)
{
    int ok = 1;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "add_generation_prompt"))
        ok &= cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt) != NULL;
    if (bos && !cJSON_GetObjectItemCaseSensitive(vars, "bos_token"))
        ok &= cJSON_AddStringToObject(vars, "bos_token", bos) != NULL;
    if (eos && !cJSON_GetObjectItemCaseSensitive(vars, "eos_token"))
        ok &= cJSON_AddStringToObject(vars, "eos_token", eos) != NULL;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "tools"))
        ok &= cJSON_AddNullToObject(vars, "tools") != NULL;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "documents"))
        ok &= cJSON_AddNullToObject(vars, "documents") != NULL;
    return ok ? SS_OK : ss_err_set(err, SS_ERR_NOMEM, "out of memory");
}

static ss_status ct_run(const ct_opts *o, ss_err *err)
{
    ss_tokenizer *tok = NULL;
    char *file_src = NULL, *input = NULL, *out = NULL;
    size_t file_len = 0, input_len = 0, out_len = 0;
    cJSON *json = NULL;
    ss_template *t = NULL;
    const char *src = NULL, *bos = o->bos, *eos = o->eos, *name = "chat_template";
    ss_status st = SS_OK;

    if (o->model) {
        SS_CHECK_GOTO(ss_tokenizer_load(o->model, &tok, err), st, done);
        if (!bos)
            bos = ss_tokenizer_bos_token(tok);
        if (!eos)
            eos = ss_tokenizer_eos_token(tok);
        src = ss_tokenizer_chat_template(tok);
    }
    if (o->template_file) {
        SS_CHECK_GOTO(ss_read_file(o->template_file, SS_TEMPLATE_MAX_SOURCE, &file_src, &file_len, err), st, done);
        src = file_src;
        name = o->template_file;
    }
    if (!src) {
        st = ss_err_set(err, SS_ERR_NOT_FOUND, "%s/tokenizer_config.json has no chat_template (give --template FILE)",
                        o->model);
        goto done;
    }
    SS_CHECK_GOTO(ss_template_compile(src, o->template_file ? file_len : strlen(src), name, &t, err), st, done);
    SS_CHECK_GOTO(ct_read_stdin(&input, &input_len, err), st, done);
    json = cJSON_ParseWithLength(input, input_len);
    if (cJSON_IsArray(json)) {
        st = ss_chat_template_apply(t, json, NULL, !o->no_generation_prompt, bos, eos, &out, &out_len, err);
    } else if (cJSON_IsObject(json) && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "messages"))) {
        st = ct_fill_vars(json, !o->no_generation_prompt, bos, eos, err);
        if (st == SS_OK)
            st = ss_template_render(t, json, &out, &out_len, err);
    } else {
        st = ss_err_set(err, SS_ERR_INVALID_ARG, "stdin: expected a JSON array of messages or {\"messages\": [...]}");
    }
    if (st == SS_OK && fwrite(out, 1, out_len, stdout) != out_len)
        st = ss_err_set(err, SS_ERR_IO, "stdout: write failed");
    if (st == SS_OK && fflush(stdout) != 0)
        st = ss_err_set(err, SS_ERR_IO, "stdout: write failed");
done:
    ss_free(out);
    cJSON_Delete(json);
    ss_free(input);
    ss_template_destroy(t);
    ss_free(file_src);
    ss_tokenizer_destroy(tok);
    return st;
}

int ss_cmd_chat_template(int argc, char **argv, char **env)
{
    ct_opts o;
    memset(&o, 0, sizeof(o));
    ss_opt opts[] = {
        {"model", SS_OPT_STR, &o.model, "model folder: chat_template, bos and eos from its tokenizer_config.json"},
        {"template", SS_OPT_STR, &o.template_file, "Jinja template file (overrides the model's)"},
        {"bos", SS_OPT_STR, &o.bos, "bos_token value (default: the model's)"},
        {"eos", SS_OPT_STR, &o.eos, "eos_token value (default: the model's)"},
        {"no-generation-prompt", SS_OPT_BOOL, &o.no_generation_prompt, "render with add_generation_prompt=false"},
        {NULL, 0, NULL, NULL},
    };
    static const char synopsis[] =
        "shardserve chat-template [--model DIR | --template FILE [--bos S --eos S]] [--no-generation-prompt]\n"
        "  (default: the bundled model's template)\n"
        "  messages JSON on stdin (an array, or an object with \"messages\" plus any other template variables);\n"
        "  the rendered prompt on stdout, byte for byte";
    ss_err err = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "chat-template", &err);
    if (st == SS_ERR_CANCELLED) /* --help: usage already printed */
        return SS_EXIT_OK;
    if (st != SS_OK) {
        fprintf(stderr, "shardserve chat-template: %s\nusage: %s\n", err.msg, synopsis);
        return SS_EXIT_USAGE;
    }
    char default_dir[4096];
    if (!o.model && !o.template_file) { /* the bundled model's template */
        if ((st = ss_default_model_dir(default_dir, sizeof default_dir, &err)) != SS_OK) {
            fprintf(stderr, "shardserve chat-template: %s\n", err.msg);
            return ss_status_exit_code(st);
        }
        o.model = default_dir;
    }
    st = ct_run(&o, &err);
    if (st != SS_OK) {
        fprintf(stderr, "shardserve chat-template: %s\n", err.msg);
        /* a template's own complaint about the messages (raise_exception, type errors) is bad input */
        return st == SS_ERR_INVALID_ARG ? SS_EXIT_BAD_INPUT : ss_status_exit_code(st);
    }
    return SS_EXIT_OK;
}
