/* json_num.c — cJSON numbers as range-checked integers (json_num.h). cJSON keeps every number as a double; reading
 * one into an integer type must check the range first, which these do in one place. */
#include "core/json_num.h"

#include <math.h>

int ss_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    const double d = v->valuedouble;
    /* the comparisons reject NaN and infinities too; only then is the conversion defined */
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return 0;
    *out = (int64_t)d;
    return 1;
}

int ss_json_i32(const cJSON *v, int32_t lo, int32_t hi, int32_t *out)
{
    int64_t x;
    if (!ss_json_int(v, lo, hi, &x))
        return 0;
    *out = (int32_t)x;
    return 1;
}
