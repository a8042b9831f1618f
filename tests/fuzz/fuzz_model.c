/* fuzz_model.c — libFuzzer target: safetensors headers and config.json parsing on arbitrary bytes.
 * The first byte picks the parser; nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "model/config.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ss_err e;
    if (data[0] & 1) {
        ss_st_file *f = NULL;
        if (ss_st_parse(data + 1, size - 1, "fuzz.safetensors", &f, &e) == SS_OK) {
            for (size_t i = 0; i < ss_st_count(f); i++) {
                const ss_st_tensor *t = ss_st_at(f, i);
                /* touch the first and last byte: validation promised they are inside the buffer */
                if (t->nbytes) {
                    volatile uint8_t a = ((const uint8_t *)t->data)[0];
                    volatile uint8_t b = ((const uint8_t *)t->data)[t->nbytes - 1];
                    (void)a;
                    (void)b;
                }
                (void)ss_st_find(f, t->name);
                /* validation promised that no two tensors share a byte (checked pairwise for small headers) */
                for (size_t j = 0; ss_st_count(f) <= 256 && j < i; j++) {
                    const ss_st_tensor *u = ss_st_at(f, j);
                    if (t->nbytes && u->nbytes && t->offset < u->offset + u->nbytes && u->offset < t->offset + t->nbytes)
                        __builtin_trap();
                }
            }
            ss_st_close(f);
        }
    } else {
        ss_model_config c;
        if (ss_config_parse((const char *)data + 1, size - 1, "fuzz/config.json", &c, &e) == SS_OK) {
            float inv[512];
            if (c.head_dim < 2 || c.head_dim > 1024) /* validation's promise: forward.c's rope table holds 512 */
                __builtin_trap();
            ss_config_rope_inv_freq(&c, inv);
            (void)ss_genconfig_parse((const char *)data + 1, size - 1, "fuzz/generation_config.json", &c, &e);
        }
    }
    return 0;
}
