/* fuzz_template.c — libFuzzer target: arbitrary bytes compiled and rendered as a chat template with a
 * small fixed context. Any input must end in SS_OK or a clean error: no crash, leak, hang or huge output. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cJSON.h>

#include "core/alloc.h"
#include "template/chat_template.h"

static const char fz_context[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>x</think>\\n\\nHello\",\"tool_calls\":[{\"function\":"
    "{\"name\":\"f\",\"arguments\":{\"a\":[1,2.5,null,true]}}}]}],\"add_generation_prompt\":true,"
    "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"tools\":null,\"n\":3}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cJSON *vars; /* parsed once, read-only afterwards */
    if (!vars)
        vars = cJSON_Parse(fz_context);
    ss_err err;
    ss_template *t = NULL;
    if (ss_template_compile((const char *)data, size, "fuzz", &t, &err) != SS_OK)
        return 0;
    char *out = NULL;
    size_t len = 0;
    if (ss_template_render(t, vars, &out, &len, &err) == SS_OK) {
        if (strlen(out) > len) /* the output is NUL-terminated at len (it may hold NULs itself) */
            __builtin_trap();
        ss_free(out);
    }
    ss_template_destroy(t);
    return 0;
}
