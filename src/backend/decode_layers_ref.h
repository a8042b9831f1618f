/* decode_layers_ref.h — the decode_layers op composed of a backend's own ops, one layer after another:
 * the cpu backend's implementation, and the reference the fused (cuda) version is tested against. */
#ifndef SS_DECODE_LAYERS_REF_H
#define SS_DECODE_LAYERS_REF_H

#include "backend/backend.h"

/* Runs d (see ss_decode_layers) through be's rmsnorm, matmul, head_rmsnorm, rope, kv_store, attention,
 * add_rmsnorm, silu_mul and add, with all of d's scratch (h, x and gu included). Borrows be and d. */
ss_status ss_decode_layers_by_op(const ss_backend *be, const ss_decode_layers *d);

#endif
