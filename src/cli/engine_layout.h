/* engine_layout.h — what `serve` and `generate` take from a prepared engine when the user leaves it out:
 * the tensor/pipeline layout it was prepared for, and a model name for the APIs. */
#ifndef SS_CLI_ENGINE_LAYOUT_H
#define SS_CLI_ENGINE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The value of --tp / --pp before parsing: left out (any value a user gives is checked as given). */
#define SS_CLI_UNSET INT64_MIN

/* A *tp or *pp left SS_CLI_UNSET becomes the engine's own when dir holds a prepared engine (manifest.json),
 * else 1; a value given is kept (the runner refuses one that does not match the engine). engine: dir must
 * be a prepared engine (--engine), else SS_ERR_NOT_FOUND. name (may be NULL): the name of the model the
 * engine was prepared from, as `serve --model ID` names it ("org/Name" -> "Name"; a local folder's name
 * lowercased, as for a checkpoint folder), or "" when dir is no engine. */
ss_status ss_cli_engine_layout(const char *dir, int engine, int64_t *tp, int64_t *pp, char *name, size_t name_cap,
                               ss_err *err);

#endif
