/* lt_api.h — the cuBLASLt functions that matmul_lt.c calls, loaded with dlopen when a cuda backend is created
 * instead of linked: libcublasLt's static initialisers cost every process ~80 ms at start (session 62). */
#ifndef SS_LT_API_H
#define SS_LT_API_H

#include <cublasLt.h>

#include "core/status.h"

/* Each field has the type of the library function it names (the header's prototypes, so calls stay checked). */
typedef struct ss_lt_api {
    void *lib; /* the dlopen handle */
    __typeof__(&cublasLtCreate) create;
    __typeof__(&cublasLtDestroy) destroy;
    __typeof__(&cublasLtGetStatusString) status_string;
    __typeof__(&cublasLtMatmul) matmul;
    __typeof__(&cublasLtMatmulAlgoGetHeuristic) heuristic;
    __typeof__(&cublasLtMatmulDescCreate) desc_create;
    __typeof__(&cublasLtMatmulDescDestroy) desc_destroy;
    __typeof__(&cublasLtMatmulDescSetAttribute) desc_set;
    __typeof__(&cublasLtMatmulPreferenceCreate) pref_create;
    __typeof__(&cublasLtMatmulPreferenceDestroy) pref_destroy;
    __typeof__(&cublasLtMatmulPreferenceSetAttribute) pref_set;
    __typeof__(&cublasLtMatrixLayoutCreate) layout_create;
    __typeof__(&cublasLtMatrixLayoutDestroy) layout_destroy;
} ss_lt_api;

/* Loads the cuBLASLt of the major version this build's headers are (libcublasLt.so.<major>, found as the dynamic
 * loader finds libraries: LD_LIBRARY_PATH, the binary's run path, the system's) and every function above into *api
 * (the caller's). On failure *api is zeroed and err names the library or the missing function. */
ss_status ss_lt_api_load(ss_lt_api *api, ss_err *err);
/* Drops this load's reference (no-op on a zeroed api); the library itself stays loaded for the process. */
void ss_lt_api_unload(ss_lt_api *api);

#endif
