/* fuzz_manifest.c — libFuzzer target: manifest.json parsing must never crash, leak or accept a
 * manifest whose rank count disagrees with tp × pp or whose file names leave the engine folder. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "engine/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_manifest *m = NULL;
    ss_err err;
    if (ss_manifest_parse((const char *)data, size, "fuzz", &m, &err) == SS_OK) {
        if (m->n_ranks != (size_t)m->tp * (size_t)m->pp)
            abort();
        for (size_t i = 0; i < m->n_ranks; i++)
            if (!ss_manifest_name_ok(m->ranks[i].name))
                abort();
        char *text = NULL;
        if (ss_manifest_to_json(m, &text, &err) == SS_OK) {
            ss_manifest *m2 = NULL;
            if (ss_manifest_parse(text, strlen(text), "fuzz2", &m2, &err) != SS_OK)
                abort(); /* what we write we must read back */
            ss_manifest_destroy(m2);
            ss_free(text);
        }
        ss_manifest_destroy(m);
    }
    return 0;
}
