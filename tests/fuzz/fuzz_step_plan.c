/* fuzz_step_plan.c — libFuzzer target over the step-plan and step-output decoders (runner/step_plan.c): the
 * first byte picks one (plans reach every worker from the leader, outputs the leader from the last stage).
 * Any input decodes or is refused with SS_ERR_FORMAT, never a crash; what decodes re-encodes to the same
 * bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "runner/step_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refusal must say the bytes are wrong (or memory ran out), nothing else. Returns 1 when refused. */
static int refused(ss_status st)
{
    if (st != SS_OK && st != SS_ERR_FORMAT && st != SS_ERR_NOMEM)
        __builtin_trap();
    return st != SS_OK;
}

/* The re-encoding (buf, owned, freed here) must be the input. */
static void same_bytes(ss_status enc, uint8_t *buf, size_t len, const uint8_t *data, size_t size)
{
    if (enc == SS_OK && (len != size || memcmp(buf, data, size) != 0))
        __builtin_trap();
    ss_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int output = data[0] & 1;
    data++, size--;
    ss_err err = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;
    if (output) {
        ss_step_output o;
        if (refused(ss_step_output_decode(data, size, &o, &err)))
            return 0;
        same_bytes(ss_step_output_encode(&o, &buf, &len, &err), buf, len, data, size);
        ss_step_output_clear(&o);
    } else {
        ss_step_plan p;
        if (refused(ss_step_plan_decode(data, size, &p, &err)))
            return 0;
        same_bytes(ss_step_plan_encode(&p, &buf, &len, &err), buf, len, data, size);
        ss_step_plan_free(&p);
    }
    return 0;
}
