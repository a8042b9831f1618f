/* tool_calls.c — OpenAI function calling (see tool_calls.h): request checks, the forcing schema, parsing the model's
 * calls out of its answer (cJSON reads the call objects) and naming them. A stream's view: tool_stream.c. */
#include "serve/tool_calls.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define TOOLS_MAX 128

ss_tool_format ss_tool_format_of_template(const char *tpl)
{
    if (!tpl || !strstr(tpl, "tools"))
        return SS_TOOL_FORMAT_NONE;
    if (strstr(tpl, SS_DS_CALL_BEGIN))
        return SS_TOOL_FORMAT_DEEPSEEK;
    if (strstr(tpl, SS_MISTRAL_TAG)) /* the newer templates write a call's name, then [ARGS] */
        return strstr(tpl, SS_MISTRAL_ARGS) ? SS_TOOL_FORMAT_MISTRAL_V11 : SS_TOOL_FORMAT_MISTRAL;
    return strstr(tpl, SS_TOOL_TAG) ? SS_TOOL_FORMAT_HERMES : SS_TOOL_FORMAT_JSON;
}

const char *ss_tool_format_str(ss_tool_format fmt)
{
    switch (fmt) {
    case SS_TOOL_FORMAT_JSON: return "as JSON objects";
    case SS_TOOL_FORMAT_HERMES: return "in <tool_call> blocks";
    case SS_TOOL_FORMAT_MISTRAL: return "as [TOOL_CALLS] lists";
    case SS_TOOL_FORMAT_MISTRAL_V11: return "as [TOOL_CALLS]name[ARGS]{...}";
    case SS_TOOL_FORMAT_DEEPSEEK: return "in DeepSeek's tool-call markers";
    case SS_TOOL_FORMAT_NONE: break;
    }
    return "off";
}

int ss_tool_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

/* The function object of tool t, or NULL. */
static const cJSON *tool_function(const cJSON *t)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
    return cJSON_IsObject(f) ? f : NULL;
}

static const char *tool_name(const cJSON *t)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(tool_function(t), "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!ss_tool_name_char(s[i]))
            return 0;
    return 1;
}

/* The tool of tools named name, or NULL. */
static const cJSON *tool_find(const cJSON *tools, const char *name)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const char *n = tool_name(t);
        if (n && strcmp(n, name) == 0)
            return t;
    }
    return NULL;
}

int ss_tools_has(const cJSON *tools, const char *name)
{
    return tool_find(tools, name) != NULL;
}

int ss_tools_has_prefix(const cJSON *tools, const char *s, size_t n)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const char *nm = tool_name(t);
        if (nm && strlen(nm) >= n && memcmp(nm, s, n) == 0)
            return 1;
    }
    return 0;
}

/* A schema's "type" that lets an object through: "object", or a list holding it. */
static int type_allows_object(const cJSON *ty)
{
    if (cJSON_IsString(ty))
        return !strcmp(ty->valuestring, "object");
    if (!cJSON_IsArray(ty))
        return 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, ty)
        if (cJSON_IsString(t) && !strcmp(t->valuestring, "object"))
            return 1;
    return 0;
}

ss_status ss_tools_check(const cJSON *tools, const cJSON *tool_choice, ss_tool_choice *choice, const char **named,
                         const char **param, char *msg, size_t cap)
{
    *choice = SS_TOOL_CHOICE_NONE;
    *named = NULL;
    *param = "tools";
    if (!tools || cJSON_IsNull(tools) || (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) == 0)) {
        if (tool_choice && !cJSON_IsNull(tool_choice) &&
            !(cJSON_IsString(tool_choice) && strcmp(tool_choice->valuestring, "none") == 0)) {
            *param = "tool_choice";
            snprintf(msg, cap, "'tool_choice' needs 'tools'");
            return SS_ERR_INVALID_ARG;
        }
        return SS_OK;
    }
    if (!cJSON_IsArray(tools)) {
        snprintf(msg, cap, "'tools' must be a list of {\"type\": \"function\", \"function\": {...}}");
        return SS_ERR_INVALID_ARG;
    }
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *f = tool_function(t);
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !f) {
            snprintf(msg, cap, "'tools[%d]' must be {\"type\": \"function\", \"function\": {...}}", i);
            return SS_ERR_INVALID_ARG;
        }
        const char *n = tool_name(t);
        if (!n || !name_ok(n)) {
            snprintf(msg, cap, "'tools[%d].function.name' must be 1 to 64 letters, digits, '_', '-' or '.'", i);
            return SS_ERR_INVALID_ARG;
        }
        if (tool_find(tools, n) != t) {
            snprintf(msg, cap, "'tools[%d].function.name' repeats '%s'", i, n);
            return SS_ERR_INVALID_ARG;
        }
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        if (pr && !cJSON_IsNull(pr) && !cJSON_IsObject(pr)) {
            snprintf(msg, cap, "'tools[%d].function.parameters' must be a JSON schema object", i);
            return SS_ERR_INVALID_ARG;
        }
        const cJSON *ty = cJSON_IsObject(pr) ? cJSON_GetObjectItemCaseSensitive(pr, "type") : NULL;
        if (ty && !type_allows_object(ty)) {
            /* a call's arguments are an object: a forced call's grammar would let the model write another value,
             * which the call reader then refuses (the answer came back as text), and OpenAI refuses it too */
            snprintf(msg, cap, "'tools[%d].function.parameters' must describe an object (\"type\": \"object\"): a "
                     "call's arguments are one", i);
            return SS_ERR_INVALID_ARG;
        }
        if (++i > TOOLS_MAX) {
            snprintf(msg, cap, "'tools' has more than %d entries", TOOLS_MAX);
            return SS_ERR_INVALID_ARG;
        }
    }
    *param = "tool_choice";
    *choice = SS_TOOL_CHOICE_AUTO;
    if (!tool_choice || cJSON_IsNull(tool_choice))
        return SS_OK;
    if (cJSON_IsString(tool_choice)) {
        const char *c = tool_choice->valuestring;
        if (strcmp(c, "auto") == 0)
            return SS_OK;
        if (strcmp(c, "none") == 0 || strcmp(c, "required") == 0) {
            *choice = c[0] == 'n' ? SS_TOOL_CHOICE_NONE : SS_TOOL_CHOICE_REQUIRED;
            return SS_OK;
        }
    } else if (cJSON_IsObject(tool_choice)) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(tool_choice, "function"), "name");
        if (cJSON_IsString(n)) {
            const cJSON *tt = tool_find(tools, n->valuestring);
            if (!tt) {
                snprintf(msg, cap, "'tool_choice' names '%.64s', which is not in 'tools'", n->valuestring);
                return SS_ERR_INVALID_ARG;
            }
            *choice = SS_TOOL_CHOICE_NAMED;
            *named = tool_name(tt);
            return SS_OK;
        }
    }
    snprintf(msg, cap,
             "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": "
             "{\"name\": ...}}");
    return SS_ERR_INVALID_ARG;
}

/* 1 when every "$ref" inside v points into "$defs" or "definitions" (hoisted to the call's schema, where they resolve
 * the same); "#" (the parameters themselves) or anything else would resolve against the call object instead. */
static int refs_hoistable(const cJSON *v)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, v)
    {
        if (c->string && strcmp(c->string, "$ref") == 0 &&
            !(cJSON_IsString(c) &&
              (strncmp(c->valuestring, "#/$defs/", 8) == 0 || strncmp(c->valuestring, "#/definitions/", 14) == 0)))
            return 0;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !refs_hoistable(c))
            return 0;
    }
    return 1;
}

/* {"type": "object", "properties": {"name": name_schema, key: args}, "required": ["name", key]}, taking name_schema
 * and args (key: a string literal); NULL when out of memory (both are then freed). */
static cJSON *call_object(cJSON *name_schema, cJSON *args, const char *key)
{
    const char *req_names[2] = {"name", key};
    cJSON *s = cJSON_CreateObject(), *props = cJSON_CreateObject(), *req = cJSON_CreateStringArray(req_names, 2);
    if (!s || !props || !req || !name_schema || !args || !cJSON_AddStringToObject(s, "type", "object")) {
        cJSON_Delete(s), cJSON_Delete(props), cJSON_Delete(req), cJSON_Delete(name_schema), cJSON_Delete(args);
        return NULL;
    }
    /* constant keys: these additions allocate nothing, so they cannot fail */
    cJSON_AddItemToObjectCS(props, "name", name_schema);
    cJSON_AddItemToObjectCS(props, key, args);
    cJSON_AddItemToObjectCS(s, "properties", props);
    cJSON_AddItemToObjectCS(s, "required", req);
    return s;
}

/* The call object of one tool: the name a const, the arguments its parameters' schema, whose "$defs" / "definitions"
 * move up to the top level (their "$ref"s resolve against it). */
static cJSON *call_schema(const cJSON *tool, const char *key)
{
    cJSON *nm = cJSON_CreateObject();
    if (nm && !cJSON_AddStringToObject(nm, "const", tool_name(tool))) {
        cJSON_Delete(nm);
        nm = NULL;
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(tool_function(tool), "parameters");
    cJSON *args = cJSON_IsObject(pr) ? cJSON_Duplicate(pr, 1) : cJSON_CreateObject();
    if (args && !cJSON_IsObject(pr) && !cJSON_AddStringToObject(args, "type", "object")) {
        cJSON_Delete(args);
        args = NULL;
    }
    cJSON *s = call_object(nm, args, key);
    static const char *const defs[] = {"$defs", "definitions"};
    for (int i = 0; s && i < 2; i++) {
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(args, defs[i]);
        if (d)
            cJSON_AddItemToObjectCS(s, defs[i], d);
    }
    return s;
}

ss_status ss_tools_forced_schema(const cJSON *tools, const char *named, ss_tool_format fmt, cJSON **out, char *msg,
                                 size_t cap)
{
    const char *key = fmt == SS_TOOL_FORMAT_JSON ? "parameters" : "arguments";
    *out = NULL;
    const cJSON *one = named ? tool_find(tools, named) : cJSON_GetArraySize(tools) == 1 ? cJSON_GetArrayItem(tools, 0)
                                                                                         : NULL;
    if (one) {
        if (!refs_hoistable(cJSON_GetObjectItemCaseSensitive(tool_function(one), "parameters"))) {
            snprintf(msg, cap, "the parameters of '%s' use a \"$ref\" other than #/$defs/... or #/definitions/..., "
                               "which a forced call cannot follow", tool_name(one));
            return SS_ERR_UNSUPPORTED;
        }
        return (*out = call_schema(one, key)) ? SS_OK : SS_ERR_NOMEM;
    }
    /* the JSON guide's top level is one object (no anyOf of objects): the name from an enum, the arguments any
     * object */
    const char *names[TOOLS_MAX];
    int n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) if (n < TOOLS_MAX) names[n++] = tool_name(t);
    cJSON *nm = cJSON_CreateObject(), *list = cJSON_CreateStringArray(names, n), *args = cJSON_CreateObject();
    if (!nm || !list || !args || !cJSON_AddStringToObject(args, "type", "object")) {
        cJSON_Delete(nm), cJSON_Delete(list), cJSON_Delete(args);
        return SS_ERR_NOMEM;
    }
    cJSON_AddItemToObjectCS(nm, "enum", list);
    return (*out = call_object(nm, args, key)) ? SS_OK : SS_ERR_NOMEM;
}

void ss_tool_calls_free(ss_tool_calls *c)
{
    for (int32_t i = 0; i < c->n; i++) {
        ss_free(c->calls[i].name);
        ss_free(c->calls[i].arguments);
    }
    ss_free(c->calls);
    memset(c, 0, sizeof *c);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Past the characters a tool's name may hold. */
static const char *skip_name(const char *p, const char *end)
{
    while (p < end && ss_tool_name_char(*p))
        p++;
    return p;
}

static int starts_with(const char *p, const char *end, const char *tag)
{
    size_t n = strlen(tag);
    return (size_t)(end - p) >= n && memcmp(p, tag, n) == 0;
}

/* 1 and *p moved past tag when tag is at *p. */
static int eat(const char **p, const char *end, const char *tag)
{
    if (!starts_with(*p, end, tag))
        return 0;
    *p += strlen(tag);
    return 1;
}

/* The first tag in [p, end), or NULL. */
static const char *find_tag(const char *p, const char *end, const char *tag)
{
    for (; p < end; p++)
        if (starts_with(p, end, tag))
            return p;
    return NULL;
}

/* The content of an answer whose calls begin at tag: the text before it less trailing white space. */
static size_t content_before(const char *text, const char *tag)
{
    size_t n = (size_t)(tag - text);
    while (n > 0 && is_ws(text[n - 1]))
        n--;
    return n;
}

/* Appends a call of the tool named name_in with the arguments args (JSON text; taken, NULL when it was not made):
 * 1, or -1 when out of memory. Calls past max_calls are read, not kept (parallel_tool_calls false: the first only). */
static int push_call(ss_tool_calls *out, const char *name_in, char *args, int32_t max_calls)
{
    if (!args)
        return -1;
    if (out->n >= max_calls) {
        ss_free(args);
        return 1;
    }
    ss_tool_call *c = ss_realloc(out->calls, (size_t)(out->n + 1) * sizeof *c);
    char *name = ss_strdup(name_in);
    if (!c || !name) {
        if (c)
            out->calls = c;
        ss_free(name);
        ss_free(args);
        return -1;
    }
    out->calls = c;
    c[out->n++] = (ss_tool_call){.name = name, .arguments = args};
    return 1;
}

/* Object a printed as the arguments are given: compact (owned; NULL when out of memory). */
static char *print_args(const cJSON *a)
{
    char *p = cJSON_PrintUnformatted(a);
    char *args = p ? ss_strdup(p) : NULL;
    cJSON_free(p);
    return args;
}

/* Appends the call that object o describes ({"name": a tool's name, "arguments" or "parameters": an object, or a
 * string holding one}): 1 when it does, 0 when o is no call, -1 when out of memory. The first "name" counts, and the
 * first of "arguments" and "parameters", whichever it is (a stream sends the arguments it meets first). */
static int add_call(ss_tool_calls *out, const cJSON *o, const cJSON *tools, int32_t max_calls)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsObject(o) || !cJSON_IsString(n) || !tool_find(tools, n->valuestring))
        return 0;
    const cJSON *a = o->child;
    while (a && !(a->string && (strcmp(a->string, "arguments") == 0 || strcmp(a->string, "parameters") == 0)))
        a = a->next;
    if (!a || cJSON_IsNull(a))
        return push_call(out, n->valuestring, ss_strdup("{}"), max_calls);
    if (cJSON_IsObject(a))
        return push_call(out, n->valuestring, print_args(a), max_calls);
    if (!cJSON_IsString(a))
        return 0;
    cJSON *inner = cJSON_ParseWithOpts(a->valuestring, NULL, 1); /* nothing may follow the object */
    int ok = cJSON_IsObject(inner);
    cJSON_Delete(inner);
    return ok ? push_call(out, n->valuestring, ss_strdup(a->valuestring), max_calls) : 0;
}

/* A call written as its name (name[0..n)), then its arguments' object at p (cJSON skips the white space before it):
 * appended as add_call does; *next just past the object. */
static int parse_bare_call(ss_tool_calls *out, const char *name, size_t n, const char *p, const char *end,
                           const cJSON *tools, int32_t max_calls, const char **next)
{
    char nm[65];
    if (n == 0 || n >= sizeof nm)
        return 0;
    memcpy(nm, name, n);
    nm[n] = '\0';
    if (!tool_find(tools, nm))
        return 0;
    const char *stop = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
    int r = cJSON_IsObject(o) ? push_call(out, nm, print_args(o), max_calls) : 0;
    cJSON_Delete(o);
    *next = stop;
    return r;
}

/* Parses one JSON object at [p, end) into a call; *next: just past it. 1, 0 (not a call) or -1 (out of memory). */
static int parse_call_at(ss_tool_calls *out, const char *p, const char *end, const cJSON *tools, int32_t max_calls,
                         const char **next)
{
    const char *stop = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
    if (!o)
        return 0;
    int r = add_call(out, o, tools, max_calls);
    cJSON_Delete(o);
    *next = stop;
    return r;
}

/* JSON format: [python tag] call [; call]... with white space around; the whole text. */
static int parse_json_calls(ss_tool_calls *out, const char *text, size_t len, const cJSON *tools, int32_t max_calls)
{
    const char *p = text, *end = text + len;
    p = skip_ws(p, end);
    if ((size_t)(end - p) >= strlen(SS_PYTHON_TAG) && memcmp(p, SS_PYTHON_TAG, strlen(SS_PYTHON_TAG)) == 0)
        p = skip_ws(p + strlen(SS_PYTHON_TAG), end);
    if (p == end || *p != '{')
        return 0;
    while (p < end) {
        int r = parse_call_at(out, p, end, tools, max_calls, &p);
        if (r <= 0)
            return r;
        p = skip_ws(p, end);
        if (p < end && *p == ';')
            p = skip_ws(p + 1, end);
        else if (p < end)
            return 0;
    }
    return 1;
}

/* MISTRAL format: [marker] [call, ...] with white space around (or calls as the JSON format has them); the whole text. */
static int parse_mistral_calls(ss_tool_calls *out, const char *text, size_t len, const cJSON *tools, int32_t max_calls)
{
    const char *p = text, *end = text + len;
    const size_t ml = strlen(SS_MISTRAL_TAG);
    p = skip_ws(p, end);
    if ((size_t)(end - p) >= ml && memcmp(p, SS_MISTRAL_TAG, ml) == 0)
        p = skip_ws(p + ml, end);
    if (p == end || *p != '[')
        return parse_json_calls(out, p, (size_t)(end - p), tools, max_calls);
    const char *stop = NULL;
    cJSON *list = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
    int r = cJSON_IsArray(list) && cJSON_GetArraySize(list) > 0 && skip_ws(stop, end) == end;
    for (const cJSON *o = r > 0 ? list->child : NULL; o; o = o->next)
        if ((r = add_call(out, o, tools, max_calls)) <= 0)
            break;
    cJSON_Delete(list);
    return r;
}

/* HERMES format: text, then <tool_call> JSON </tool_call> blocks with white space between (the last may be left
 * open: the model stopped at its end-of-turn token). */
static int parse_hermes_calls(ss_tool_calls *out, const char *text, size_t len, const cJSON *tools, int32_t max_calls)
{
    const char *end = text + len;
    const char *p = find_tag(text, end, SS_TOOL_TAG);
    if (!p)
        return 0;
    out->content_len = content_before(text, p);
    while (p < end) {
        if (!eat(&p, end, SS_TOOL_TAG))
            return 0;
        const char *next = NULL;
        int r = parse_call_at(out, skip_ws(p, end), end, tools, max_calls, &next);
        if (r <= 0)
            return r;
        p = skip_ws(next, end);
        if (eat(&p, end, SS_TOOL_END))
            p = skip_ws(p, end);
        else if (p < end)
            return 0;
    }
    return 1;
}

/* MISTRAL_V11: whether a call begins at p without its marker: a tool's name, then its arguments' object or a marker. */
static int v11_head(const char *p, const char *end, const cJSON *tools)
{
    const char *ne = skip_name(p, end);
    char nm[65];
    if (ne == p || ne - p >= (ptrdiff_t)sizeof nm || ne == end)
        return 0;
    memcpy(nm, p, (size_t)(ne - p));
    nm[ne - p] = '\0';
    return tool_find(tools, nm) &&
           (*ne == '{' || starts_with(ne, end, SS_MISTRAL_ARGS) || starts_with(ne, end, SS_MISTRAL_CALL_ID));
}

/* MISTRAL_V11: the whole answer is calls when it begins with one (or with the marker); else the text before the first
 * marker is the content. Each call: [marker] name ([CALL_ID] id [ARGS] | [ARGS] | nothing) {arguments}, with white
 * space after a marker and between calls. */
static int parse_v11_calls(ss_tool_calls *out, const char *text, size_t len, const cJSON *tools, int32_t max_calls)
{
    const char *end = text + len, *p = skip_ws(text, end);
    if (!starts_with(p, end, SS_MISTRAL_TAG) && !v11_head(p, end, tools)) {
        if (!(p = find_tag(text, end, SS_MISTRAL_TAG)))
            return 0;
        out->content_len = content_before(text, p);
    }
    while (p < end) {
        if (eat(&p, end, SS_MISTRAL_TAG))
            p = skip_ws(p, end);
        const char *name = p, *q = skip_name(p, end);
        size_t n = (size_t)(q - name);
        if (eat(&q, end, SS_MISTRAL_CALL_ID)) { /* the model's own id: ours replaces it */
            while (q < end && ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
                q++;
            if (!eat(&q, end, SS_MISTRAL_ARGS))
                return 0;
        } else if (!eat(&q, end, SS_MISTRAL_ARGS) && !(q < end && *q == '{')) {
            return 0;
        }
        int r = parse_bare_call(out, name, n, q, end, tools, max_calls, &p);
        if (r <= 0)
            return r;
        p = skip_ws(p, end);
    }
    return 1;
}

/* DEEPSEEK: one call after its begin marker, through its end marker (*next just past it): V3's
 * `function<sep>name ```json {arguments} ```<call_end>` or V3.1's `name<sep>{arguments}<call_end>`, told apart by
 * what follows <sep> after white space: '{' or not. */
static int parse_ds_call(ss_tool_calls *out, const char *p, const char *end, const cJSON *tools, int32_t max_calls,
                         const char **next)
{
    const char *name = skip_ws(p, end), *q = skip_name(name, end);
    size_t n = (size_t)(q - name);
    if (!eat(&q, end, SS_DS_SEP))
        return 0;
    const char *v = q;
    while (v < end && (unsigned char)*v <= 32) /* as cJSON skips it before the arguments */
        v++;
    int fenced = v == end || *v != '{';
    if (fenced) {
        if (n != 8 || memcmp(name, "function", 8) != 0)
            return 0;
        name = v;
        q = skip_name(v, end);
        n = (size_t)(q - name);
        q = skip_ws(q, end);
        if (!eat(&q, end, "```"))
            return 0;
        eat(&q, end, "json");
    }
    int r = parse_bare_call(out, name, n, q, end, tools, max_calls, &q);
    if (r <= 0)
        return r;
    q = skip_ws(q, end);
    if (fenced && !eat(&q, end, "```"))
        return 0;
    q = skip_ws(q, end);
    if (!eat(&q, end, SS_DS_CALL_END))
        return 0;
    *next = q;
    return 1;
}

/* DEEPSEEK: text, then <calls_begin>, calls with white space between, then <calls_end> (or the end of the text). */
static int parse_ds_calls(ss_tool_calls *out, const char *text, size_t len, const cJSON *tools, int32_t max_calls)
{
    const char *end = text + len, *p = find_tag(text, end, SS_DS_CALLS_BEGIN);
    if (!p)
        return 0;
    out->content_len = content_before(text, p);
    p += strlen(SS_DS_CALLS_BEGIN);
    for (int calls = 0;; calls++) {
        p = skip_ws(p, end);
        if (p == end || eat(&p, end, SS_DS_CALLS_END))
            return calls > 0 && skip_ws(p, end) == end;
        if (!eat(&p, end, SS_DS_CALL_BEGIN))
            return 0;
        int r = parse_ds_call(out, p, end, tools, max_calls, &p);
        if (r <= 0)
            return r;
    }
}

ss_status ss_tool_calls_parse(ss_tool_format fmt, int forced, const char *text, size_t len, const cJSON *tools,
                              int32_t max_calls, ss_tool_calls *out)
{
    memset(out, 0, sizeof *out);
    if (fmt == SS_TOOL_FORMAT_NONE || max_calls < 1)
        return SS_OK;
    int (*parse)(ss_tool_calls *, const char *, size_t, const cJSON *, int32_t) = parse_json_calls;
    if (!forced && fmt == SS_TOOL_FORMAT_HERMES)
        parse = parse_hermes_calls;
    else if (!forced && fmt == SS_TOOL_FORMAT_MISTRAL)
        parse = parse_mistral_calls;
    else if (!forced && fmt == SS_TOOL_FORMAT_MISTRAL_V11)
        parse = parse_v11_calls;
    else if (!forced && fmt == SS_TOOL_FORMAT_DEEPSEEK)
        parse = parse_ds_calls;
    int r = parse(out, text, len, tools, max_calls); /* (only the formats with text before calls set content_len) */
    if (r <= 0) { /* text after all (or out of memory) */
        ss_tool_calls_free(out);
        return r < 0 ? SS_ERR_NOMEM : SS_OK;
    }
    return SS_OK;
}

void ss_tool_call_id(ss_tool_format fmt, const char *response_id, int32_t choice, int32_t i, char id[48])
{
    const char *tail = response_id ? strchr(response_id, '-') : NULL;
    tail = tail ? tail + 1 : "0";
    if (fmt != SS_TOOL_FORMAT_MISTRAL && fmt != SS_TOOL_FORMAT_MISTRAL_V11) {
        snprintf(id, 48, "call_%.16s_%d_%d", tail, (int)choice, (int)i);
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the tail, the choice and the call */
    char key[64];
    int n = snprintf(key, sizeof key, "%.32s/%d/%d", tail, (int)choice, (int)i);
    for (int k = 0; k < n; k++)
        h = (h ^ (uint8_t)key[k]) * 0x100000001b3ull;
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (int k = 0; k < 9; k++, h /= 62)
        id[k] = digits[h % 62];
    id[9] = '\0';
}

void ss_tool_calls_name(ss_tool_calls *c, ss_tool_format fmt, const char *response_id, int32_t choice)
{
    for (int32_t i = 0; i < c->n; i++)
        ss_tool_call_id(fmt, response_id, choice, i, c->calls[i].id);
}
