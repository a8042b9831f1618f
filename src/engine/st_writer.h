/* st_writer.h — a streaming safetensors writer: the header (names, dtypes, shapes, offsets) is fixed
 * up front, then tensor data is appended in declaration order through a bounded buffer. */
#ifndef SS_ENGINE_ST_WRITER_H
#define SS_ENGINE_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "engine/digest.h"
#include "engine/quick_digest.h"
#include "model/safetensors.h"

typedef struct ss_st_entry {
    const char *name;             /* borrowed for the call that takes the entry */
    ss_dtype dtype;
    int32_t ndim;                 /* 0..SS_ST_MAX_DIMS */
    int64_t shape[SS_ST_MAX_DIMS];
} ss_st_entry;

typedef struct ss_st_kv {
    const char *key;   /* a "__metadata__" entry (string to string) */
    const char *value;
} ss_st_kv;

/* Byte length of one entry's data (elements × dtype size); 0 on overflow or a bad entry. */
uint64_t ss_st_entry_nbytes(const ss_st_entry *e);

/* Builds the file prefix: 8-byte little-endian header length, the JSON header, space padding up to a
 * multiple of 8. Data offsets follow entry order. *out is the caller's (ss_free); *data_bytes gets
 * the total data size. Refuses duplicate names, names starting with "__", and bad shapes. */
ss_status ss_st_header_build(const ss_st_entry *entries, size_t n, const ss_st_kv *meta, size_t n_meta,
                             char **out, size_t *out_len, uint64_t *data_bytes, ss_err *err);

typedef struct ss_st_writer_params {
    size_t buffer_bytes;  /* write buffer (default 8 MiB) */
    int digest;           /* compute the file's sha256 and quick digest while writing (default on) */
    int sync;             /* fsync the file at finish (default on) */
    int64_t throttle_bps; /* test only: cap the write rate in bytes/s (0 = none) */
} ss_st_writer_params;

ss_st_writer_params ss_st_writer_default_params(void);

typedef struct ss_st_writer ss_st_writer;

/* Creates (truncates) `path` and writes the header. entries/meta are copied. Caller destroys. */
ss_status ss_st_writer_create(const char *path, const ss_st_entry *entries, size_t n, const ss_st_kv *meta,
                              size_t n_meta, const ss_st_writer_params *params, ss_st_writer **out, ss_err *err);
/* Appends the next `len` bytes of tensor data (they may span tensors, in entry order). */
ss_status ss_st_writer_append(ss_st_writer *w, const void *data, size_t len, ss_err *err);
/* Zero-copy variant: *ptr gets room for at least min(want, buffer size) bytes (*got says how many)
 * inside the writer's buffer, valid until the next call; commit the bytes actually filled. */
ss_status ss_st_writer_reserve(ss_st_writer *w, size_t want, void **ptr, size_t *got, ss_err *err);
ss_status ss_st_writer_commit(ss_st_writer *w, size_t n, ss_err *err);
/* Index of the tensor the next byte belongs to (n when all data was written). */
size_t ss_st_writer_current(const ss_st_writer *w);
/* Checks that every declared byte was written, flushes, fsyncs and closes. digest_hex (optional)
 * gets the sha256 of the whole file when params.digest; file_size (optional) its size. */
ss_status ss_st_writer_finish(ss_st_writer *w, char digest_hex[SS_SHA256_HEX], int64_t *file_size, ss_err *err);
/* After a finish with params.digest: the file's quick digest (quick_digest.h) into out; else out gets "". */
void ss_st_writer_quick_digest(const ss_st_writer *w, char out[SS_QUICK_DIGEST_LEN]);
/* Frees the writer; a file that was not finished is removed. */
void ss_st_writer_destroy(ss_st_writer *w);

#endif
