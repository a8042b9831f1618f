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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int output = data[0] & 1;
    data++, size--;
    ss_err err = {{0}};
    if (output) {
        ss_step_output o;
        ss_status st = ss_step_output_decode(data, size, &o, &err);
        if (st != SS_OK) {
            if (st != SS_ERR_FORMAT && st != SS_ERR_NOMEM)
                __builtin_trap();
            return 0;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ss_step_output_encode(&o, &buf, &len, &err) == SS_OK) {
            if (len != size || memcmp(buf, data, size) != 0)
                __builtin_trap();
            ss_free(buf);
        }
        ss_step_output_clear(&o);
        return 0;
    }
    ss_step_plan p;
    ss_status st = ss_step_plan_decode(data, size, &p, &err);
    if (st != SS_OK) {
        if (st != SS_ERR_FORMAT && st != SS_ERR_NOMEM)
            __builtin_trap();
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ss_step_plan_encode(&p, &buf, &len, &err) == SS_OK) {
        if (len != size || memcmp(buf, data, size) != 0)
            __builtin_trap();
        ss_free(buf);
    }
    ss_step_plan_free(&p);
    return 0;
}
