/* log.h — leveled log lines on stderr, prefixed with time and the process's role (rank/node).
 * The prefix and level are set once at start-up (ss_log_init) and only read afterwards. */
#ifndef SS_LOG_H
#define SS_LOG_H

typedef enum ss_log_level { SS_LOG_DEBUG, SS_LOG_INFO, SS_LOG_WARN, SS_LOG_ERROR, SS_LOG_OFF } ss_log_level;

/* Call once from main before threads start. role: e.g. "rank 0/4 node 0"; copied. */
void ss_log_init(ss_log_level level, const char *role);
ss_log_level ss_log_level_get(void);
/* "debug" | "info" | "warn" | "error" -> *out; 0 on success, -1 (out untouched) for anything else. */
int ss_log_level_parse(const char *name, ss_log_level *out);
/* The name ss_log_level_parse reads back ("error" for SS_LOG_OFF and above). */
const char *ss_log_level_name(ss_log_level level);
void ss_log(ss_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SS_LOGD(...) ss_log(SS_LOG_DEBUG, __VA_ARGS__)
#define SS_LOGI(...) ss_log(SS_LOG_INFO, __VA_ARGS__)
#define SS_LOGW(...) ss_log(SS_LOG_WARN, __VA_ARGS__)
#define SS_LOGE(...) ss_log(SS_LOG_ERROR, __VA_ARGS__)

#endif
