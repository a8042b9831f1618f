/* lt_api.c — loads cuBLASLt at run time (lt_api.h says why): dlopen of the library of this build's major version,
 * then dlsym of each function the backend calls. */
#include "backend/cuda/lt_api.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#define LT_STR2(x) #x
#define LT_STR(x) LT_STR2(x)
#define LT_LIBRARY "libcublasLt.so." LT_STR(CUBLAS_VER_MAJOR)

_Static_assert(sizeof(((ss_lt_api *)0)->create) == sizeof(void *), "a function pointer is dlsym's size");

/* The library's name of each field of ss_lt_api. */
static const struct {
    const char *name;
    size_t offset;
} lt_symbols[] = {
    {"cublasLtCreate", offsetof(ss_lt_api, create)},
    {"cublasLtDestroy", offsetof(ss_lt_api, destroy)},
    {"cublasLtGetStatusString", offsetof(ss_lt_api, status_string)},
    {"cublasLtMatmul", offsetof(ss_lt_api, matmul)},
    {"cublasLtMatmulAlgoGetHeuristic", offsetof(ss_lt_api, heuristic)},
    {"cublasLtMatmulDescCreate", offsetof(ss_lt_api, desc_create)},
    {"cublasLtMatmulDescDestroy", offsetof(ss_lt_api, desc_destroy)},
    {"cublasLtMatmulDescSetAttribute", offsetof(ss_lt_api, desc_set)},
    {"cublasLtMatmulPreferenceCreate", offsetof(ss_lt_api, pref_create)},
    {"cublasLtMatmulPreferenceDestroy", offsetof(ss_lt_api, pref_destroy)},
    {"cublasLtMatmulPreferenceSetAttribute", offsetof(ss_lt_api, pref_set)},
    {"cublasLtMatrixLayoutCreate", offsetof(ss_lt_api, layout_create)},
    {"cublasLtMatrixLayoutDestroy", offsetof(ss_lt_api, layout_destroy)},
};

ss_status ss_lt_api_load(ss_lt_api *api, ss_err *err)
{
    memset(api, 0, sizeof *api);
    /* RTLD_NODELETE: the library stays for the process once loaded (its kernels, and the CUDA state it keeps, are not
     * torn down and set up again each time the last backend goes and another comes, as tests do) */
    api->lib = dlopen(LT_LIBRARY, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!api->lib) {
        const char *why = dlerror();
        return ss_err_set(err, SS_ERR_NOT_FOUND,
                          "cuda: cannot load %s (%s): install the CUDA %d runtime libraries or add their folder to "
                          "LD_LIBRARY_PATH",
                          LT_LIBRARY, why ? why : "not found", CUBLAS_VER_MAJOR);
    }
    for (size_t i = 0; i < sizeof lt_symbols / sizeof lt_symbols[0]; i++) {
        void *fn = dlsym(api->lib, lt_symbols[i].name);
        if (!fn) {
            dlclose(api->lib);
            memset(api, 0, sizeof *api);
            return ss_err_set(err, SS_ERR_NOT_FOUND, "cuda: %s has no %s: not the cuBLASLt this build expects",
                              LT_LIBRARY, lt_symbols[i].name);
        }
        /* POSIX: dlsym's object pointer holds a function's address; every field is a function pointer of its size */
        memcpy((char *)api + lt_symbols[i].offset, &fn, sizeof fn);
    }
    return SS_OK;
}

void ss_lt_api_unload(ss_lt_api *api)
{
    if (api->lib)
        dlclose(api->lib);
    memset(api, 0, sizeof *api);
}
