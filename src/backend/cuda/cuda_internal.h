/* cuda_internal.h — shared by the host files of the CUDA backend (the .c files of src/backend/cuda/) and the NCCL
 * comm: CUDA_CHECK mapping the runtime's errors to ss_status with file, line and the
 * library's message, and the cuBLASLt matmul wrapper. Includes CUDA headers: never include it elsewhere. */
#ifndef SS_CUDA_INTERNAL_H
#define SS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Fills err with "file:line: expr: message", logs it (the op table returns only a status, so the log
 * line is where the detail surfaces) and returns st. */
ss_status ss_cuda_fail(ss_err *err, ss_status st, const char *file, int line, const char *expr, const char *msg);

/* SS_ERR_NOMEM for allocation failures, SS_ERR_CUDA otherwise. */
ss_status ss_cuda_status_of(cudaError_t e);

#define CUDA_CHECK(err, call)                                                                           \
    do {                                                                                                \
        cudaError_t cu_e_ = (call);                                                                     \
        if (cu_e_ != cudaSuccess)                                                                       \
            return ss_cuda_fail((err), ss_cuda_status_of(cu_e_), __FILE__, __LINE__, #call,              \
                                cudaGetErrorString(cu_e_));                                             \
    } while (0)

#define CUDA_CHECK_GOTO(err, call, st, label)                                                           \
    do {                                                                                                \
        cudaError_t cu_e_ = (call);                                                                     \
        if (cu_e_ != cudaSuccess) {                                                                     \
            (st) = ss_cuda_fail((err), ss_cuda_status_of(cu_e_), __FILE__, __LINE__, #call,             \
                                cudaGetErrorString(cu_e_));                                             \
            goto label;                                                                                 \
        }                                                                                               \
    } while (0)

/* ---- cuBLASLt (matmul_lt.c) ---- */
typedef struct ss_cuda_lt ss_cuda_lt;

/* A cuBLASLt handle, a device workspace of workspace_bytes and a small cache of matmul plans, for the
 * current device. Caller destroys. */
ss_status ss_cuda_lt_create(size_t workspace_bytes, ss_cuda_lt **out, ss_err *err);
void ss_cuda_lt_destroy(ss_cuda_lt *lt);

/* out[n, m] = x[n, k] . W[m, k]^T on `stream`; bf16 inputs, fp32 accumulation, out bf16 or f32
 * (out_f32). Capturable in a CUDA graph (plans are made on the host). */
ss_status ss_cuda_lt_matmul(ss_cuda_lt *lt, cudaStream_t stream, void *out, int out_f32, const void *x, const void *W,
                            int64_t n, int32_t m, int32_t k, ss_err *err);
/* out[t, i] (bf16) = (xq[t, :] . Wq[i, :]) * x_scale[t] * w_scale[i] over e4m3 inputs (fp32 accumulate): x_scale [n]
 * and w_scale [m] are device vectors, applied by cuBLASLt (outer-vector scales) from fp8_outer_min rows on where it
 * can, else by a kernel after an unscaled GEMM. k % 16 == 0, xq and Wq 16-byte aligned. */
ss_status ss_cuda_lt_matmul_fp8(ss_cuda_lt *lt, cudaStream_t stream, void *out, const void *xq, const float *x_scale,
                                const void *Wq, const float *w_scale, int64_t n, int32_t m, int32_t k, ss_err *err);
/* out[t, i] (bf16) = xq[t, :] . Wq[i, :] over e4m3 inputs, unscaled (|out| <= 448^2 k): for callers that apply
 * the scales in a kernel they run anyway (the fp8 SwiGLU). */
ss_status ss_cuda_lt_matmul_e4m3(ss_cuda_lt *lt, cudaStream_t stream, void *out, const void *xq, const void *Wq,
                                 int64_t n, int32_t m, int32_t k, ss_err *err);

#endif
