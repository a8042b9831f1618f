/* engine_layout.h — what `serve` and `generate` take from a prepared engine when the user leaves it out:
 * the tensor/pipeline layout it was prepared for, and a model name for the APIs. */
#ifndef SS_CLI_ENGINE_LAYOUT_H
#define SS_CLI_ENGINE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* A *tp or *pp of 0 (left out) becomes the engine's own when dir holds a prepared engine (manifest.json),
 * else 1; a value given is kept (the runner refuses one that does not match the engine). name (may be
 * NULL): the engine's source model name ("org/Name" -> "name"), or "" when dir is no engine. */
ss_status ss_cli_engine_layout(const char *dir, int64_t *tp, int64_t *pp, char *name, size_t name_cap, ss_err *err);

#endif
