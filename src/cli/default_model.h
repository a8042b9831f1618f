/* default_model.h — where the bundled demo model lives, so `serve`/`generate` work with no --model. */
#ifndef SS_DEFAULT_MODEL_H
#define SS_DEFAULT_MODEL_H

#include <stddef.h>

#include "core/status.h"

#define SS_DEFAULT_MODEL_NAME "shardserve-demo"

/* Finds the bundled model folder: next to the source tree this binary was built from
 * (models/shardserve-demo), then <exe dir>/../share/shardserve/models/..., then
 * /opt/shardserve/models/... (the container image). Writes the path into buf. */
ss_status ss_default_model_dir(char *buf, size_t cap, ss_err *err);

#endif
