/* A tiny test registry (libuv-style): each case runs in its own forked process under an alarm,
 * so a crash or hang fails that case only. A binary prints one line per case and ends with
 * "N passed, N failed"; exit status is non-zero on any failure.
 *
 *   TEST(name) { CHECK(1 + 1 == 2); CHECK_EQ_INT(a, b); }
 *   ... TEST_MAIN()   -- at the end of the file (cases register themselves)
 *
 * Filter with argv[1] (substring of the case name). TEST_TIMEOUT env: seconds per case
 * (default 60). TEST_NOFORK=1 runs in-process (for gdb). */
#ifndef CIM_TEST_H
#define CIM_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*test_fn_t)(void);
struct test_case {
    const char *name;
    test_fn_t fn;
};

#define TEST_MAX 512
static struct test_case test_cases_[TEST_MAX];
static int test_count_;
static int test_failed_in_case_;

#define TEST(tname)                                                                                \
    static void test_##tname(void);                                                                \
    __attribute__((constructor)) static void test_reg_##tname(void)                                \
    {                                                                                              \
        if (test_count_ < TEST_MAX) {                                                              \
            test_cases_[test_count_].name = #tname;                                                \
            test_cases_[test_count_].fn = test_##tname;                                            \
            test_count_++;                                                                         \
        }                                                                                          \
    }                                                                                              \
    static void test_##tname(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            test_failed_in_case_ = 1;                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long) (a), b_ = (long long) (b);                                      \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, \
                    a_, b_);                                                                       \
            test_failed_in_case_ = 1;                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, #a, \
                    #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
            test_failed_in_case_ = 1;                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int test_run_one_(const struct test_case *tc, int timeout)
{
    if (getenv("TEST_NOFORK")) {
        tc->fn();
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        alarm((unsigned) timeout);
        tc->fn();
        fflush(stdout);
        exit(test_failed_in_case_ ? 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  %s: killed by signal %d%s\n", tc->name, WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
        return -1;
    }
    return WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* now as the servers' log lines spell time (UTC, ms): a failed case names its time window, and
 * tests/run.sh prints the server log lines of that window */
static void test_utc_(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (tv.tv_usec / 1000));
}

static int test_main_(int argc, char **argv)
{
    int passed = 0, failed = 0;
    int timeout = getenv("TEST_TIMEOUT") ? atoi(getenv("TEST_TIMEOUT")) : 60;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < test_count_; i++) {
        const struct test_case *tc = &test_cases_[i];
        if (argc > 1 && !strstr(tc->name, argv[1]))
            continue;
        char t0[96], t1[96]; /* room for any int the format could print: gcc -O2 checks */
        test_utc_(t0, sizeof(t0));
        int rc = test_run_one_(tc, timeout);
        test_utc_(t1, sizeof(t1));
        if (rc == 0) {
            printf("ok   %s\n", tc->name);
            passed++;
        } else {
            printf("FAIL %s (%s .. %s)\n", tc->name, t0, t1);
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN()                                                                                \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return test_main_(argc, argv);                                                             \
    }

#endif
