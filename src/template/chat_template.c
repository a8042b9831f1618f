/* chat_template.c — the public face of the template engine: compile once (lex + parse into an arena),
 * render many times (a fresh value heap and scope per render), and the chat convenience wrapper. */
#include <cJSON.h>
#include <string.h>

#include "core/alloc.h"
#include "template/chat_template.h"
#include "template/tmpl_internal.h"

struct ss_template {
    tm_arena arena;
    char *name;
    tn *root;
};

ss_status ss_template_compile(const char *src, size_t len, const char *name, ss_template **out, ss_err *err)
{
    if (!out || (!src && len))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_template_compile: NULL argument");
    *out = NULL;
    if (!name)
        name = "template";
    if (len > SS_TEMPLATE_MAX_SOURCE)
        return ss_err_set(err, SS_ERR_CAPACITY, "%s: template is %zu bytes, the limit is %zu", name, len,
                          (size_t)SS_TEMPLATE_MAX_SOURCE);
    ss_template *t = ss_calloc(1, sizeof(*t));
    if (!t)
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    t->name = ss_strdup(name);
    if (!t->name) {
        ss_free(t);
        return ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", name);
    }
    tm_token *toks = NULL;
    size_t ntoks = 0;
    ss_status st = tm_lex(&t->arena, src ? src : "", len, t->name, &toks, &ntoks, err);
    if (st == SS_OK)
        st = tm_parse(&t->arena, toks, ntoks, t->name, &t->root, err);
    if (st != SS_OK) {
        ss_template_destroy(t);
        return st;
    }
    *out = t;
    return SS_OK;
}

void ss_template_destroy(ss_template *t)
{
    if (!t)
        return;
    tm_arena_free(&t->arena);
    ss_free(t->name);
    ss_free(t);
}

/* Binds every member of a JSON object into the root scope. */
static ss_status ct_bind_json(tr *r, const cJSON *vars)
{
    for (const cJSON *c = vars ? vars->child : NULL; c; c = c->next) {
        if (!c->string)
            continue;
        tv v;
        SS_CHECK(tv_from_json(r, c, &v));
        SS_CHECK(tr_bind(r, c->string, v));
    }
    return SS_OK;
}

typedef struct ct_extra {
    const char *name;
    tv value;
} ct_extra;

static ss_status ct_render(const ss_template *t, const cJSON *vars, const ct_extra *extra, size_t nextra, char **out,
                           size_t *out_len, ss_err *err)
{
    if (!t || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_template_render: NULL argument");
    if (vars && !cJSON_IsObject(vars))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: template variables must be a JSON object", t->name);
    *out = NULL;
    if (out_len)
        *out_len = 0;
    tframe root = {0};
    tbuf buf = {0};
    tr r = {.name = t->name, .err = err, .out = &buf, .root = &root, .cur = &root};
    r.heap.next = r.heap.prev = &r.heap;
    ss_status st = ct_bind_json(&r, vars);
    for (size_t i = 0; i < nextra && st == SS_OK; i++)
        st = tr_bind(&r, extra[i].name, extra[i].value);
    if (st == SS_OK)
        st = tr_exec_body(&r, t->root);
    if (st == SS_OK && !buf.p) {
        buf.p = ss_malloc(1);
        if (!buf.p)
            st = ss_err_set(err, SS_ERR_NOMEM, "%s: out of memory", t->name);
    }
    /* scope and heap go in one sweep: values are refcounted, but namespaces may form cycles */
    ss_free((void *)root.names);
    ss_free(root.vals);
    tm_index_free(&root.ix);
    tr_heap_free_all(&r);
    if (st != SS_OK) {
        tbuf_free(&buf);
        return st;
    }
    if (buf.n == 0)
        buf.p[0] = '\0';
    *out = buf.p;
    if (out_len)
        *out_len = buf.n;
    return SS_OK;
}

ss_status ss_template_render(const ss_template *t, const struct cJSON *vars, char **out, size_t *out_len, ss_err *err)
{
    return ct_render(t, vars, NULL, 0, out, out_len, err);
}

ss_status ss_chat_template_apply(const ss_template *t, const struct cJSON *messages, const struct cJSON *tools,
                                 int add_generation_prompt, const char *bos_token, const char *eos_token, char **out,
                                 size_t *out_len, ss_err *err)
{
    if (!messages || !cJSON_IsArray(messages))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "chat template: messages must be a JSON array");
    if (!t || !out)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_chat_template_apply: NULL argument");
    /* messages is bound through a one-member wrapper object so that the JSON conversion owns no copy:
     * strings inside stay borrowed from the caller's cJSON for the duration of the render. */
    cJSON wrapper;
    memset(&wrapper, 0, sizeof(wrapper));
    wrapper.type = cJSON_Object;
    cJSON member = *messages;
    member.next = member.prev = NULL;
    member.string = (char *)"messages";
    wrapper.child = &member;
    cJSON tools_member; /* borrowed the same way */
    if (tools && cJSON_IsArray(tools)) {
        tools_member = *tools;
        tools_member.next = NULL;
        tools_member.prev = &member;
        tools_member.string = (char *)"tools";
        member.next = &tools_member;
    }
    ct_extra extra[5];
    size_t n = 0;
    extra[n++] = (ct_extra){"add_generation_prompt", tv_bool(add_generation_prompt)};
    if (bos_token)
        extra[n++] = (ct_extra){"bos_token", tv_sborrow(bos_token, strlen(bos_token))};
    if (eos_token)
        extra[n++] = (ct_extra){"eos_token", tv_sborrow(eos_token, strlen(eos_token))};
    if (!member.next)
        extra[n++] = (ct_extra){"tools", tv_none()};
    extra[n++] = (ct_extra){"documents", tv_none()};
    return ct_render(t, &wrapper, extra, n, out, out_len, err);
}
