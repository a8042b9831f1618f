/* models.h — what the clang static analyzer cannot see in libraries it does not analyze, force-included by
 * scripts/analyze.sh into every file it analyzes (never into a real build). */
#ifndef SS_ANALYZER_MODELS_H
#define SS_ANALYZER_MODELS_H
#ifdef __clang_analyzer__
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <cjson/cJSON.h>

/* cJSON's type tests are false for NULL (cJSON.c checks), so `if (cJSON_IsString(x)) x->valuestring` is safe. */
#define cJSON_IsInvalid(x) ((x) != NULL && (cJSON_IsInvalid)(x))
#define cJSON_IsFalse(x) ((x) != NULL && (cJSON_IsFalse)(x))
#define cJSON_IsTrue(x) ((x) != NULL && (cJSON_IsTrue)(x))
#define cJSON_IsBool(x) ((x) != NULL && (cJSON_IsBool)(x))
#define cJSON_IsNull(x) ((x) != NULL && (cJSON_IsNull)(x))
#define cJSON_IsNumber(x) ((x) != NULL && (cJSON_IsNumber)(x))
#define cJSON_IsString(x) ((x) != NULL && (cJSON_IsString)(x))
#define cJSON_IsArray(x) ((x) != NULL && (cJSON_IsArray)(x))
#define cJSON_IsObject(x) ((x) != NULL && (cJSON_IsObject)(x))
#define cJSON_IsRaw(x) ((x) != NULL && (cJSON_IsRaw)(x))

/* getsockname and getpeername fill the address they are given (at most *len bytes). */
static inline int ss_model_getsockname(int fd, struct sockaddr *a, socklen_t *len)
{
    memset(a, 0, *len);
    return getsockname(fd, a, len);
}
static inline int ss_model_getpeername(int fd, struct sockaddr *a, socklen_t *len)
{
    memset(a, 0, *len);
    return getpeername(fd, a, len);
}
#define getsockname(fd, a, len) ss_model_getsockname((fd), (a), (len))
#define getpeername(fd, a, len) ss_model_getpeername((fd), (a), (len))

#endif
#endif
