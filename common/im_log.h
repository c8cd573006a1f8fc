/* im_log: one line per event on stderr: "2026-11-23T06:00:00.123Z name[pid] LEVEL message". */
#ifndef IM_LOG_H
#define IM_LOG_H

enum { IM_LOG_DEBUG = 0, IM_LOG_INFO = 1, IM_LOG_WARN = 2, IM_LOG_ERROR = 3 };

extern int im_log_level;

/* Set the process name shown in each line (kept by pointer). */
void im_log_init(const char *name, int level);
/* Parse "debug"/"info"/"warn"/"error"; -1 when unknown. */
int im_log_parse_level(const char *s);
void im_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define IM_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= im_log_level)                                                                 \
            im_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define log_debug(...) IM_LOG(IM_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  IM_LOG(IM_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  IM_LOG(IM_LOG_WARN, __VA_ARGS__)
#define log_error(...) IM_LOG(IM_LOG_ERROR, __VA_ARGS__)

#endif
