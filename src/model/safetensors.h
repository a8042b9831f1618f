/* safetensors.h — reading safetensors checkpoints mapped from disk, with strict header validation.
 * A checkpoint is a folder with model.safetensors or a sharded set named by model.safetensors.index.json. */
#ifndef SS_SAFETENSORS_H
#define SS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define SS_ST_MAX_DIMS 4
#define SS_ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference implementation caps it */

typedef struct ss_st_tensor {
    const char *name;           /* borrowed from the file handle */
    ss_dtype dtype;             /* f32, bf16, f16 or e4m3 (fp8 weights, with a scale tensor; others refused) */
    int32_t ndim;
    int64_t shape[SS_ST_MAX_DIMS];
    uint64_t offset;            /* absolute byte offset of the data in the file */
    uint64_t nbytes;
    const void *data;           /* inside the mapping; valid until the file is closed */
} ss_st_tensor;

typedef struct ss_st_file ss_st_file;

/* Maps and validates `path`: header length and JSON, dtypes, shapes × dtype == byte length, offsets
 * inside the file, no overlaps. Errors name the file and the tensor. Caller closes. */
ss_status ss_st_open(const char *path, ss_st_file **out, ss_err *err);
/* Validates a header held in memory (for fuzzing and tests): buf holds the whole file (len bytes). */
ss_status ss_st_parse(const uint8_t *buf, size_t len, const char *name, ss_st_file **out, ss_err *err);
void ss_st_close(ss_st_file *f);
const char *ss_st_path(const ss_st_file *f);
/* The whole file's bytes as the tensors' data points into them (the mapping), and their count; valid until close. */
const uint8_t *ss_st_bytes(const ss_st_file *f, size_t *len);
size_t ss_st_count(const ss_st_file *f);
const ss_st_tensor *ss_st_at(const ss_st_file *f, size_t i);
const ss_st_tensor *ss_st_find(const ss_st_file *f, const char *name);

typedef struct ss_checkpoint ss_checkpoint;

/* Opens <dir>/model.safetensors, or every file of <dir>/model.safetensors.index.json (checking that
 * each indexed tensor is in the file the index names). Caller closes. */
ss_status ss_checkpoint_open(const char *dir, ss_checkpoint **out, ss_err *err);
/* Opens one safetensors file as a checkpoint (an engine's rank file). Caller closes. */
ss_status ss_checkpoint_open_file(const char *path, ss_checkpoint **out, ss_err *err);
void ss_checkpoint_close(ss_checkpoint *c);
/* Finds a tensor by name; *file_path (optional) gets the file holding it. NULL if absent. */
const ss_st_tensor *ss_checkpoint_find(const ss_checkpoint *c, const char *name, const char **file_path);
size_t ss_checkpoint_file_count(const ss_checkpoint *c);
const ss_st_file *ss_checkpoint_file(const ss_checkpoint *c, size_t i);

#endif
