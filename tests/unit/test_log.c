/* Unit tests for common/im_log. */
#include "../test.h"

#include <pthread.h>

#include "im_log.h"

/* Run fn with stderr redirected to a temp file; return the file's text (malloc'd). */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/cim_test_log_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = malloc((size_t) size + 1);
    CHECK(buf != NULL);
    CHECK(pread(fd, buf, (size_t) size, 0) == size);
    buf[size] = '\0';
    close(fd);
    return buf;
}

static void log_some(void)
{
    im_log_init("msg_test", IM_LOG_INFO);
    log_debug("hidden %d", 1);
    log_info("hello %s %d", "world", 42);
    log_warn("careful");
    log_error("broken\n"); /* a trailing newline is not doubled */
}

TEST(log_format)
{
    CHECK_EQ_INT(im_log_level, IM_LOG_INFO); /* default */
    char *out = capture_stderr(log_some);
    CHECK(strstr(out, "hidden") == NULL);
    char pid[32];
    snprintf(pid, sizeof(pid), "msg_test[%ld] ", (long) getpid());
    /* "2026-11-23T06:00:00.123Z msg_test[pid] INFO hello world 42" */
    const char *line = out;
    const char *levels[] = {"INFO hello world 42\n", "WARN careful\n", "ERROR broken\n"};
    for (int i = 0; i < 3; i++) {
        CHECK(strlen(line) > 25);
        for (int j = 0; j < 24; j++) {
            if (j == 4 || j == 7)
                CHECK(line[j] == '-');
            else if (j == 10)
                CHECK(line[j] == 'T');
            else if (j == 13 || j == 16)
                CHECK(line[j] == ':');
            else if (j == 19)
                CHECK(line[j] == '.');
            else if (j == 23)
                CHECK(line[j] == 'Z');
            else
                CHECK(line[j] >= '0' && line[j] <= '9');
        }
        CHECK(line[24] == ' ');
        CHECK(strncmp(line + 25, pid, strlen(pid)) == 0);
        const char *rest = line + 25 + strlen(pid);
        CHECK(strncmp(rest, levels[i], strlen(levels[i])) == 0);
        line = rest + strlen(levels[i]);
    }
    CHECK(*line == '\0');
    free(out);
}

TEST(log_parse_level)
{
    CHECK_EQ_INT(im_log_parse_level("debug"), IM_LOG_DEBUG);
    CHECK_EQ_INT(im_log_parse_level("info"), IM_LOG_INFO);
    CHECK_EQ_INT(im_log_parse_level("warn"), IM_LOG_WARN);
    CHECK_EQ_INT(im_log_parse_level("error"), IM_LOG_ERROR);
    CHECK_EQ_INT(im_log_parse_level("ERROR"), IM_LOG_ERROR);
    CHECK_EQ_INT(im_log_parse_level("loud"), -1);
    CHECK_EQ_INT(im_log_parse_level(""), -1);
    CHECK_EQ_INT(im_log_parse_level(NULL), -1);
}

static void log_debug_level(void)
{
    im_log_init("x", IM_LOG_DEBUG);
    log_debug("visible");
    im_log_init("x", IM_LOG_ERROR);
    log_warn("not shown");
}

TEST(log_levels)
{
    char *out = capture_stderr(log_debug_level);
    CHECK(strstr(out, " DEBUG visible\n") != NULL);
    CHECK(strstr(out, "not shown") == NULL);
    free(out);
}

static void log_long(void)
{
    char big[20000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info("%s", big);
}

TEST(log_long_line_truncated)
{
    char *out = capture_stderr(log_long);
    size_t n = strlen(out);
    CHECK(n > 1000 && n < 20000);
    CHECK(out[n - 1] == '\n');
    CHECK(strchr(out, '\n') == out + n - 1);
    CHECK(strstr(out, "...\n") != NULL);
    free(out);
}

static void *logger(void *arg)
{
    for (int i = 0; i < 500; i++)
        log_info("thread %ld line %d %s", (long) (intptr_t) arg, i, "xxxxxxxxxxxxxxxxxxxxxxxxx");
    return NULL;
}

static void log_threads(void)
{
    pthread_t th[4];
    for (intptr_t i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, logger, (void *) i);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
}

TEST(log_threads_whole_lines)
{
    im_log_init("t", IM_LOG_INFO);
    char *out = capture_stderr(log_threads);
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        CHECK(strstr(l, " INFO thread ") != NULL);
        CHECK(strstr(l, "xxxxxxxxxxxxxxxxxxxxxxxxx") != NULL);
        CHECK(l[strlen(l) - 1] == 'x');
        lines++;
    }
    CHECK_EQ_INT(lines, 2000);
    free(out);
}

TEST_MAIN()
