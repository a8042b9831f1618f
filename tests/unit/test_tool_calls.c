/* test_tool_calls.c — function calling's pieces (serve/tool_calls.c): the template's format, request checks, the
 * forcing schema (compiled by the JSON guide), parsing calls out of answers in each format (streams:
 * test_tool_stream.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "serve/json_guide.h"
#include "serve/json_schema.h"
#include "serve/tool_calls.h"

static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";

static void test_format_of_template(void **state)
{
    (void)state;
    assert_int_equal(ss_tool_format_of_template(NULL), SS_TOOL_FORMAT_NONE);
    assert_int_equal(ss_tool_format_of_template("{{ messages }}"), SS_TOOL_FORMAT_NONE);
    assert_int_equal(ss_tool_format_of_template("{% if tools %}{{ tools | tojson }}{% endif %}"), SS_TOOL_FORMAT_JSON);
    assert_int_equal(ss_tool_format_of_template("{% for t in tools %}<tool_call>{% endfor %}"), SS_TOOL_FORMAT_HERMES);
    assert_int_equal(ss_tool_format_of_template("{% if tools %}[TOOL_CALLS]{% endif %}"), SS_TOOL_FORMAT_MISTRAL);
    /* Mistral's newer templates write a call's name, then [ARGS]; DeepSeek's write its markers */
    assert_int_equal(ss_tool_format_of_template("{% if tools %}[AVAILABLE_TOOLS]{% endif %}{{ '[TOOL_CALLS]' + "
                                                "c.function.name + '[ARGS]' + c.function.arguments }}"),
                     SS_TOOL_FORMAT_MISTRAL_V11);
    assert_int_equal(ss_tool_format_of_template("{% if tools %}{{ tools }}{% endif %}{{ '" SS_DS_CALLS_BEGIN
                                                SS_DS_CALL_BEGIN "' + t.type + '" SS_DS_SEP "' }}"),
                     SS_TOOL_FORMAT_DEEPSEEK);
    assert_int_equal(ss_tool_format_of_template("{{ '" SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "' }}"), SS_TOOL_FORMAT_NONE);
    assert_string_equal(ss_tool_format_str(SS_TOOL_FORMAT_DEEPSEEK), "in DeepSeek's tool-call markers");
    assert_string_equal(ss_tool_format_str(SS_TOOL_FORMAT_NONE), "off");
}

static ss_status check(const char *tools, const char *choice, ss_tool_choice *c, const char **named,
                       const char **param, char *msg)
{
    cJSON *t = tools ? cJSON_Parse(tools) : NULL, *ch = choice ? cJSON_Parse(choice) : NULL;
    ss_status st = ss_tools_check(t, ch, c, named, param, msg, 256);
    if (*named) /* points into t: compare before it goes */
        assert_string_equal(*named, "now");
    cJSON_Delete(t);
    cJSON_Delete(ch);
    return st;
}

static void test_check(void **state)
{
    (void)state;
    ss_tool_choice c;
    const char *named = NULL, *param = NULL;
    char msg[256];
    assert_int_equal(check(NULL, NULL, &c, &named, &param, msg), SS_OK);
    assert_int_equal(c, SS_TOOL_CHOICE_NONE);
    assert_int_equal(check("[]", "\"none\"", &c, &named, &param, msg), SS_OK);
    assert_int_equal(check(NULL, "\"auto\"", &c, &named, &param, msg), SS_ERR_INVALID_ARG);
    assert_string_equal(param, "tool_choice");
    assert_int_equal(check(tools_json, NULL, &c, &named, &param, msg), SS_OK);
    assert_int_equal(c, SS_TOOL_CHOICE_AUTO);
    assert_int_equal(check(tools_json, "\"required\"", &c, &named, &param, msg), SS_OK);
    assert_int_equal(c, SS_TOOL_CHOICE_REQUIRED);
    assert_int_equal(check(tools_json, "\"none\"", &c, &named, &param, msg), SS_OK);
    assert_int_equal(c, SS_TOOL_CHOICE_NONE);
    assert_int_equal(check(tools_json, "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}", &c, &named, &param,
                           msg),
                     SS_OK);
    assert_int_equal(c, SS_TOOL_CHOICE_NAMED);
    named = NULL;
    assert_int_equal(check(tools_json, "{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}", &c, &named, &param,
                           msg),
                     SS_ERR_INVALID_ARG);
    assert_non_null(strstr(msg, "nope"));
    assert_int_equal(check(tools_json, "\"sometimes\"", &c, &named, &param, msg), SS_ERR_INVALID_ARG);
    assert_int_equal(check("{\"type\":\"function\"}", NULL, &c, &named, &param, msg), SS_ERR_INVALID_ARG);
    assert_string_equal(param, "tools");
    assert_int_equal(check("[{\"type\":\"code\",\"function\":{\"name\":\"a\"}}]", NULL, &c, &named, &param, msg),
                     SS_ERR_INVALID_ARG);
    assert_int_equal(check("[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", NULL, &c, &named, &param, msg),
                     SS_ERR_INVALID_ARG);
    assert_int_equal(check("[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
                           "{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]",
                           NULL, &c, &named, &param, msg),
                     SS_ERR_INVALID_ARG);
    assert_non_null(strstr(msg, "repeats"));
    assert_int_equal(check("[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":3}}]", NULL, &c, &named,
                           &param, msg),
                     SS_ERR_INVALID_ARG);
    /* parameters that describe something other than an object (helper-78: a forced call came back as text) */
    const char *not_object[] = {"{\"type\":\"integer\"}", "{\"type\":\"string\"}", "{\"type\":[\"array\",\"null\"]}",
                                "{\"type\":7}"};
    const char *object[] = {"{\"type\":\"object\"}", "{\"type\":[\"null\",\"object\"]}", "{\"properties\":{}}", "{}",
                            "null"};
    char t[256];
    for (size_t i = 0; i < 4 + 5; i++) {
        snprintf(t, sizeof t, "[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":%s}}]",
                 i < 4 ? not_object[i] : object[i - 4]);
        msg[0] = '\0';
        ss_status st = check(t, NULL, &c, &named, &param, msg);
        if (st != (i < 4 ? SS_ERR_INVALID_ARG : SS_OK))
            fail_msg("%s: status %d (%s)", t, (int)st, msg);
        if (i < 4)
            assert_non_null(strstr(msg, "'tools[0].function.parameters' must describe an object"));
    }
}

/* The forcing schemas compile, and say what they should. */
static void test_forced_schema(void **state)
{
    (void)state;
    cJSON *tools = cJSON_Parse(tools_json), *one = NULL, *any = NULL;
    char msg[256];
    assert_int_equal(ss_tools_forced_schema(tools, "get_weather", SS_TOOL_FORMAT_HERMES, &one, msg, sizeof msg), SS_OK);
    assert_int_equal(ss_tools_forced_schema(tools, NULL, SS_TOOL_FORMAT_JSON, &any, msg, sizeof msg), SS_OK);
    assert_true(one && any);
    char *s = cJSON_PrintUnformatted(one);
    assert_string_equal(s, "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":"
                           "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":"
                           "[\"city\"]}},\"required\":[\"name\",\"arguments\"]}");
    cJSON_free(s);
    s = cJSON_PrintUnformatted(any);
    assert_string_equal(s, "{\"type\":\"object\",\"properties\":{\"name\":{\"enum\":[\"get_weather\",\"now\"]},"
                           "\"parameters\":{\"type\":\"object\"}},\"required\":[\"name\",\"parameters\"]}");
    cJSON_free(s);
    ss_json_schema *a = NULL, *b = NULL;
    ss_err e;
    assert_int_equal(ss_json_schema_compile(one, &a, &e), SS_OK);
    assert_int_equal(ss_json_schema_compile(any, &b, &e), SS_OK);
    ss_json_schema_destroy(a);
    ss_json_schema_destroy(b);
    cJSON_Delete(one);
    cJSON_Delete(any);
    cJSON_Delete(tools);
    /* pydantic's parameters: $defs move up to the call's schema, where its $refs resolve (the schema compiles and
     * the definition is used); a "$ref" to the parameters themselves is refused */
    tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"p\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"x\":{\"$ref\":\"#/$defs/X\"}},\"required\":[\"x\"],\"$defs\":{\"X\":"
                        "{\"type\":\"object\",\"properties\":{\"k\":{\"const\":1}},\"required\":[\"k\"]}}}}}]");
    assert_int_equal(ss_tools_forced_schema(tools, "p", SS_TOOL_FORMAT_JSON, &one, msg, sizeof msg), SS_OK);
    s = cJSON_PrintUnformatted(one);
    assert_non_null(strstr(s, "\"required\":[\"name\",\"parameters\"],\"$defs\":{\"X\":"));
    assert_null(strstr(s, "\"required\":[\"x\"],\"$defs\""));
    cJSON_free(s);
    assert_int_equal(ss_json_schema_compile(one, &a, &e), SS_OK);
    ss_json_state st;
    ss_json_init(&st, a);
    const char *ok = "{\"name\":\"p\",\"parameters\":{\"x\":{\"k\":1}}}";
    assert_int_equal(ss_json_push_bytes(a, &st, (const uint8_t *)ok, strlen(ok)), 1);
    assert_true(ss_json_done(&st));
    ss_json_init(&st, a);
    const char *bad = "{\"name\":\"p\",\"parameters\":{\"x\":{\"k\":2";
    assert_int_equal(ss_json_push_bytes(a, &st, (const uint8_t *)bad, strlen(bad)), 0);
    ss_json_schema_destroy(a);
    cJSON_Delete(one);
    cJSON_Delete(tools);
    tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"r\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"next\":{\"$ref\":\"#\"}}}}}]");
    assert_int_equal(ss_tools_forced_schema(tools, NULL, SS_TOOL_FORMAT_JSON, &one, msg, sizeof msg), SS_ERR_UNSUPPORTED);
    assert_null(one);
    assert_non_null(strstr(msg, "'r'"));
    cJSON_Delete(tools);
}

static void parse(ss_tool_format fmt, int forced, const char *text, int32_t max, ss_tool_calls *out)
{
    cJSON *tools = cJSON_Parse(tools_json);
    assert_int_equal(ss_tool_calls_parse(fmt, forced, text, strlen(text), tools, max, out), SS_OK);
    cJSON_Delete(tools);
}

static void test_parse_json(void **state)
{
    (void)state;
    ss_tool_calls c;
    parse(SS_TOOL_FORMAT_JSON, 0, " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n", 8, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.calls[0].name, "get_weather");
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_int_equal(c.content_len, 0);
    ss_tool_calls_free(&c);
    /* python tag, two calls joined by ';', arguments as a string, a call without arguments */
    parse(SS_TOOL_FORMAT_JSON, 0,
          "<|python_tag|>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Rome\\\"}\"}; {\"name\":\"now\"}", 8,
          &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Rome\"}");
    assert_string_equal(c.calls[1].name, "now");
    assert_string_equal(c.calls[1].arguments, "{}");
    ss_tool_calls_free(&c);
    parse(SS_TOOL_FORMAT_JSON, 0, "{\"name\":\"now\"};{\"name\":\"now\"}", 1, &c); /* parallel_tool_calls false */
    assert_int_equal(c.n, 1);
    ss_tool_calls_free(&c);
    /* text, an unknown tool, trailing text, arguments that are no object: all text */
    static const char *const texts[] = {"The weather is fine.", "{\"name\":\"rm_rf\",\"parameters\":{}}",
                                        "{\"name\":\"now\"} and more", "{\"name\":\"now\",\"parameters\":[1]}",
                                        "{\"name\":\"now\",\"arguments\":\"{\\\"a\\\":1} junk\"}",
                                        "{\"name\":\"now\"", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        parse(SS_TOOL_FORMAT_JSON, 0, texts[i], 8, &c);
        assert_int_equal(c.n, 0);
        assert_null(c.calls);
    }
}

static void test_parse_hermes(void **state)
{
    (void)state;
    ss_tool_calls c;
    const char *t = "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                    "</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n";
    parse(SS_TOOL_FORMAT_HERMES, 0, t, 8, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.content_len, strlen("Let me check."));
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Oslo\"}");
    assert_string_equal(c.calls[1].name, "now");
    ss_tool_calls_free(&c);
    parse(SS_TOOL_FORMAT_HERMES, 0, "no calls here", 8, &c);
    assert_int_equal(c.n, 0);
    parse(SS_TOOL_FORMAT_HERMES, 0, "<tool_call>{\"name\":\"now\"}</tool_call> then talk", 8, &c);
    assert_int_equal(c.n, 0);
    parse(SS_TOOL_FORMAT_HERMES, 0, "<tool_call>not json</tool_call>", 8, &c);
    assert_int_equal(c.n, 0);
    /* forced: the guided answer is the bare object, whatever the format */
    parse(SS_TOOL_FORMAT_HERMES, 1, "{\"name\":\"now\",\"arguments\":{}}", 8, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.content_len, 0);
    ss_tool_calls_free(&c);
}

/* Mistral's lists of calls (the marker in the text or left out), their 9-character ids; and the ids of the others. */
static void test_parse_mistral(void **state)
{
    (void)state;
    ss_tool_calls c;
    parse(SS_TOOL_FORMAT_MISTRAL, 0,
          "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Nice\"}}, {\"name\": \"now\", "
          "\"arguments\": {}}]",
          8, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Nice\"}");
    assert_string_equal(c.calls[1].name, "now");
    ss_tool_calls_name(&c, SS_TOOL_FORMAT_MISTRAL, "chatcmpl-00ff", 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(strlen(c.calls[i].id), 9);
        for (int k = 0; k < 9; k++)
            assert_true(isalnum((unsigned char)c.calls[i].id[k]));
    }
    assert_string_not_equal(c.calls[0].id, c.calls[1].id);
    char first[48];
    strcpy(first, c.calls[0].id);
    ss_tool_calls_name(&c, SS_TOOL_FORMAT_MISTRAL, "chatcmpl-00ff", 0); /* the same response: the same ids */
    assert_string_equal(c.calls[0].id, first);
    ss_tool_calls_name(&c, SS_TOOL_FORMAT_HERMES, "chatcmpl-00ff", 3);
    assert_string_equal(c.calls[1].id, "call_00ff_3_1");
    ss_tool_calls_free(&c);
    parse(SS_TOOL_FORMAT_MISTRAL, 0, " [{\"name\":\"now\",\"arguments\":{}}]\n", 8, &c); /* the marker left out */
    assert_int_equal(c.n, 1);
    ss_tool_calls_free(&c);
    parse(SS_TOOL_FORMAT_MISTRAL, 0, "{\"name\":\"now\",\"arguments\":{}}", 8, &c); /* a bare call (forced) */
    assert_int_equal(c.n, 1);
    ss_tool_calls_free(&c);
    static const char *const texts[] = {"[1] A citation.", "[]", "[TOOL_CALLS] [{\"name\":\"rm\"}]",
                                        "[{\"name\":\"now\"}] and text", "Plain text"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        parse(SS_TOOL_FORMAT_MISTRAL, 0, texts[i], 8, &c);
        assert_int_equal(c.n, 0);
    }
}

static void assert_ids9(const ss_tool_calls *c)
{
    for (int32_t i = 0; i < c->n; i++) {
        assert_int_equal(strlen(c->calls[i].id), 9);
        for (int k = 0; k < 9; k++)
            assert_true(isalnum((unsigned char)c->calls[i].id[k]));
    }
}

/* Mistral's v11+ calls: [TOOL_CALLS]name[ARGS]{...} after any text, the markers there or left out (then the whole
 * answer is calls), a [CALL_ID] of the model's own; ids of 9 letters and digits. */
static void test_parse_mistral_v11(void **state)
{
    (void)state;
    ss_tool_calls c;
    parse(SS_TOOL_FORMAT_MISTRAL_V11, 0,
          "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}[TOOL_CALLS]now[ARGS]{}", 8, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.content_len, 0);
    assert_string_equal(c.calls[0].name, "get_weather");
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Nice\"}");
    assert_string_equal(c.calls[1].name, "now");
    assert_string_equal(c.calls[1].arguments, "{}");
    ss_tool_calls_name(&c, SS_TOOL_FORMAT_MISTRAL_V11, "chatcmpl-00ff", 0);
    assert_ids9(&c);
    assert_string_not_equal(c.calls[0].id, c.calls[1].id);
    ss_tool_calls_free(&c);
    static const struct {
        const char *text;
        int32_t n;
        size_t content_len;
        const char *args0;
    } ok[] = {
        {"get_weather{\"city\":\"Nice\"}now{}", 2, 0, "{\"city\":\"Nice\"}"}, /* the markers left out */
        {"get_weather[ARGS]{\"city\":\"Nice\"}", 1, 0, "{\"city\":\"Nice\"}"},
        {"Let me check.\n[TOOL_CALLS]now[ARGS]{\"a\": [1, 2.0]}", 1, 13, "{\"a\":[1,2]}"},
        {"now is the time [TOOL_CALLS]now[ARGS]{}", 1, 15, "{}"}, /* a name, but no call after it: text */
        {"[TOOL_CALLS]now[CALL_ID]a1B2c3D4e[ARGS]{}", 1, 0, "{}"},
        {" [TOOL_CALLS] get_weather[ARGS] {\"city\":\"X\"}\n[TOOL_CALLS]now[ARGS]{}\n", 2, 0, "{\"city\":\"X\"}"},
        {"[TOOL_CALLS]now[ARGS]{}\nget_weather{\"city\":\"Y\"}", 2, 0, "{}"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        parse(SS_TOOL_FORMAT_MISTRAL_V11, 0, ok[i].text, 8, &c);
        assert_int_equal(c.n, ok[i].n);
        assert_int_equal(c.content_len, ok[i].content_len);
        assert_string_equal(c.calls[0].arguments, ok[i].args0);
        ss_tool_calls_free(&c);
    }
    parse(SS_TOOL_FORMAT_MISTRAL_V11, 0, "now{}now{}", 1, &c); /* parallel_tool_calls false */
    assert_int_equal(c.n, 1);
    ss_tool_calls_free(&c);
    static const char *const texts[] = {
        "Plain text", "now is the time", "[TOOL_CALLS]rm[ARGS]{}", "[TOOL_CALLS]now[ARGS]{\"a\":",
        "[TOOL_CALLS]now[ARGS]{} trailing", "[TOOL_CALLS]now[ARGS][1]", "now {}", "[TOOL_CALLS]now[CALL_ID]ab{}",
        "Hi [TOOL_CALLS]now[ARGS]{bad}", "get_weather{bad}[TOOL_CALLS]now[ARGS]{}", "[TOOL_CALLS]", "",
        "[TOOL_CALLS]now", "[TOOL_CALLS]now[ARGS]", "[TOOL_CALLS]now[ARGS]{}[TOOL_CALLS]",
        "[TOOL_CALLS]now[CALL_ID]a-b[ARGS]{}", "[TOOL_CALLS][{\"name\":\"now\",\"arguments\":{}}]"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        parse(SS_TOOL_FORMAT_MISTRAL_V11, 0, texts[i], 8, &c);
        assert_int_equal(c.n, 0);
    }
    /* forced: the bare object, as for every format */
    parse(SS_TOOL_FORMAT_MISTRAL_V11, 1, "{\"name\":\"now\",\"arguments\":{}}", 8, &c);
    assert_int_equal(c.n, 1);
    ss_tool_calls_free(&c);
}

#define DS_V3(name, args) SS_DS_CALL_BEGIN "function" SS_DS_SEP name "\n```json\n" args "\n```" SS_DS_CALL_END
#define DS_V31(name, args) SS_DS_CALL_BEGIN name SS_DS_SEP args SS_DS_CALL_END

/* DeepSeek's calls after any text: V3's (type, name, fenced JSON) and V3.1's (name, JSON), the calls' end marker
 * there or not. */
static void test_parse_deepseek(void **state)
{
    (void)state;
    ss_tool_calls c;
    parse(SS_TOOL_FORMAT_DEEPSEEK, 0,
          "Sure.\n" SS_DS_CALLS_BEGIN DS_V3("get_weather", "{\"city\": \"Paris\"}") "\n" DS_V3("now", "{}")
              SS_DS_CALLS_END,
          8, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.content_len, 5);
    assert_string_equal(c.calls[0].name, "get_weather");
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_string_equal(c.calls[1].name, "now");
    assert_string_equal(c.calls[1].arguments, "{}");
    ss_tool_calls_name(&c, SS_TOOL_FORMAT_DEEPSEEK, "chatcmpl-00ff", 2);
    assert_string_equal(c.calls[1].id, "call_00ff_2_1");
    ss_tool_calls_free(&c);
    static const struct {
        const char *text;
        int32_t n;
        size_t content_len;
        const char *args0;
    } ok[] = {
        {SS_DS_CALLS_BEGIN DS_V31("get_weather", "{\"city\":\"Paris\"}") DS_V31("now", "{}") SS_DS_CALLS_END, 2, 0,
         "{\"city\":\"Paris\"}"},
        {"<think>\nhmm\n</think>\n\n" SS_DS_CALLS_BEGIN DS_V3("now", "{\"x\": 1e2}"), 1, 20, "{\"x\":100}"},
        {SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "now\n```\n{}\n```" SS_DS_CALL_END, 1, 0, "{}"},
        {SS_DS_CALLS_BEGIN DS_V31("now", " {}") "\n" DS_V3("get_weather", "{}") "\n" SS_DS_CALLS_END "\n", 2, 0, "{}"},
        {SS_DS_CALLS_BEGIN "\n" SS_DS_CALL_BEGIN "function" SS_DS_SEP " now ```json{} ```" SS_DS_CALL_END, 1, 0, "{}"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        parse(SS_TOOL_FORMAT_DEEPSEEK, 0, ok[i].text, 8, &c);
        assert_int_equal(c.n, ok[i].n);
        assert_int_equal(c.content_len, ok[i].content_len);
        assert_string_equal(c.calls[0].arguments, ok[i].args0);
        ss_tool_calls_free(&c);
    }
    static const char *const texts[] = {
        "Plain text",
        SS_DS_CALLS_BEGIN SS_DS_CALLS_END,
        SS_DS_CALLS_BEGIN,
        SS_DS_CALLS_BEGIN DS_V3("rm", "{}"),
        SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "tool" SS_DS_SEP "now\n```json\n{}\n```" SS_DS_CALL_END,
        SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "get_weather\n```json\n{\"city\": \"Pa",
        SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "now\n```json\n{}\n```",
        SS_DS_CALLS_BEGIN DS_V3("now", "{}") SS_DS_CALLS_END " and more",
        SS_DS_CALLS_BEGIN DS_V3("now", "{bad}"),
        SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "now\n{}" SS_DS_CALL_END,
        SS_DS_CALLS_BEGIN DS_V31("now", "[1]"),
        SS_DS_CALLS_BEGIN DS_V31("function", "{}"),
        SS_DS_CALLS_BEGIN DS_V3("now", "{}") "x",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        parse(SS_TOOL_FORMAT_DEEPSEEK, 0, texts[i], 8, &c);
        assert_int_equal(c.n, 0);
    }
}

/* An object with both "arguments" and "parameters": the first of them counts (a stream sends the first it meets). */
static void test_parse_first_arguments(void **state)
{
    (void)state;
    ss_tool_calls c;
    parse(SS_TOOL_FORMAT_JSON, 0,
          "{\"parameters\":{\"city\":\"A\"},\"name\":\"get_weather\",\"arguments\":{\"city\":\"B\"}}", 8, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.calls[0].arguments, "{\"city\":\"A\"}");
    ss_tool_calls_free(&c);
    parse(SS_TOOL_FORMAT_HERMES, 0,
          "<tool_call>{\"name\":\"now\",\"arguments\":null,\"parameters\":{\"x\":1}}</tool_call>", 8, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.calls[0].arguments, "{}");
    ss_tool_calls_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_of_template), cmocka_unit_test(test_check),
        cmocka_unit_test(test_forced_schema),      cmocka_unit_test(test_parse_json),
        cmocka_unit_test(test_parse_hermes),       cmocka_unit_test(test_parse_mistral),
        cmocka_unit_test(test_parse_first_arguments), cmocka_unit_test(test_parse_mistral_v11),
        cmocka_unit_test(test_parse_deepseek),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
