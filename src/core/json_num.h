/* json_num.h — a cJSON number read as an integer of a given range, checked before any conversion: a double outside
 * the target type's range (1e300, an overflowed 1e400 that strtod made infinite) converts with undefined behaviour. */
#ifndef SS_JSON_NUM_H
#define SS_JSON_NUM_H

#include <stdint.h>

#include <cjson/cJSON.h>

/* 1 and *out set when v is a number with no fractional part in [lo, hi] (|lo|, |hi| <= 2^53, where doubles are still
 * whole numbers exactly); 0 otherwise (v NULL, not a number, fractional, infinite or out of range), *out untouched. */
int ss_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);

/* The same for an int32_t. */
int ss_json_i32(const cJSON *v, int32_t lo, int32_t hi, int32_t *out);

#endif
