/* im_log: one line per event on stderr, written with a single write() call. */
#include "im_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

int im_log_level = IM_LOG_INFO;
static const char *log_name = "cim";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void im_log_init(const char *name, int level)
{
    if (name && *name)
        log_name = name;
    if (level >= IM_LOG_DEBUG && level <= IM_LOG_ERROR)
        im_log_level = level;
}

int im_log_parse_level(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "debug") == 0)
        return IM_LOG_DEBUG;
    if (strcasecmp(s, "info") == 0)
        return IM_LOG_INFO;
    if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
        return IM_LOG_WARN;
    if (strcasecmp(s, "error") == 0)
        return IM_LOG_ERROR;
    return -1;
}

void im_log_write(int level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    int saved_errno = errno;
    struct timespec ts;
    struct tm tm;

    if (level < IM_LOG_DEBUG)
        level = IM_LOG_DEBUG;
    if (level > IM_LOG_ERROR)
        level = IM_LOG_ERROR;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%ld] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int) (ts.tv_nsec / 1000000), log_name, (long) getpid(), level_names[level]);
    if (n < 0)
        n = 0;
    if ((size_t) n >= sizeof(line))
        n = (int) sizeof(line) - 1;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t) n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t) n + (size_t) m;
    if (len > sizeof(line) - 2) { /* truncated: mark it, keep room for the newline */
        len = sizeof(line) - 2;
        memcpy(line + len - 3, "...", 3);
    }
    while (len > (size_t) n && line[len - 1] == '\n')
        len--;
    line[len++] = '\n';

    const char *p = line;
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        p += w;
        len -= (size_t) w;
    }
    errno = saved_errno;
}
