/* e2e_common: helpers for the end-to-end tests against a running stack (header-only; include
 * after ../test.h). The harness (tests/run.sh) exports:
 *   CIM_GATE1, CIM_GATE2      127.0.0.1:PORT of the two msg_gates (TCP)
 *   CIM_API, CIM_API2         127.0.0.1:PORT of the two msg_logic HTTP APIs
 *   CIM_API_KEY               the business API key
 *   CIM_TEST_DIR              has ctl.sh start|stop|kill NAME (logic1 logic2 gate1 gate2 ...)
 *   CIM_TEST_AUTH_TIMEOUT, CIM_TEST_IDLE_TIMEOUT  the gates' login deadline and idle timeout (s)
 * Test stack settings: auth timeout 2 s, idle timeout 3 s (8 and 10 s under valgrind), minimum
 * password hashing cost. */
#ifndef CIM_E2E_COMMON_H
#define CIM_E2E_COMMON_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

#include "../../client/libcim.h"
#include "im_cmd.h"
#include "proto/cim.pb-c.h"

#define E2E_CONNECT_MS 3000
#define E2E_CALL_MS    5000
#define E2E_PWD        "secret-pw1"
/* a server given SIGTERM exits within this (DESIGN.md: responses in flight flushed for at most
 * 2 s), also with Redis frozen */
#define E2E_SIGTERM_MAX_MS 5000

static inline int64_t e2e_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void e2e_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Value of a harness variable; the test fails when it is not set. */
static inline const char *e2e_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "  %s is not set: run the end-to-end tests through tests/run.sh\n", name);
        CHECK(v && *v);
    }
    return v;
}

/* pid of a stack process from $CIM_TEST_DIR/NAME.pid, 0 if none */
static inline pid_t e2e_stack_pid(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.pid", e2e_env("CIM_TEST_DIR"), name);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t) pid;
}

/* 1 while pid runs (zombies count as gone) */
static inline int e2e_pid_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return 0;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !(rp && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* A user name unique across runs on the same database: <tag><pid><ms clock><counter>, at most
 * 32 characters of [a-z0-9_]. tag: at most 8 characters. */
static inline void e2e_uniq(char *out, size_t n, const char *tag)
{
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long ms =
        (unsigned long long) ts.tv_sec * 1000 + (unsigned long long) ts.tv_nsec / 1000000;
    snprintf(out, n, "%.8s_%x%llx%x", tag, (unsigned) getpid() & 0xfffff, ms & 0xffffffffffULL,
             counter++ & 0xfff);
}

/* A client connected to the gate named by the environment variable (CIM_GATE1/CIM_GATE2). */
static inline cim_client_t *e2e_connect(const char *gate_env)
{
    cim_client_t *c = cim_client_new();
    CHECK(c != NULL);
    int rc = cim_connect_addr(c, e2e_env(gate_env), E2E_CONNECT_MS);
    if (rc != 0)
        fprintf(stderr, "  connect %s (%s): %s\n", gate_env, getenv(gate_env), cim_strerror(rc));
    CHECK_EQ_INT(rc, 0);
    cim_set_call_timeout(c, E2E_CALL_MS);
    return c;
}

/* Register name/pwd on a connection of its own; returns the new user id. */
static inline uint64_t e2e_register(const char *gate_env, const char *name, const char *pwd)
{
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    uint64_t uid = 0;
    int rc = cim_register(c, name, pwd, name, &code, &uid);
    if (rc != 0)
        fprintf(stderr, "  register %s: %s, code %u\n", name, cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(code, 200);
    CHECK(uid > 0);
    cim_client_free(c);
    return uid;
}

/* A fresh client logged in with name/pwd on the gate; the test fails otherwise. */
static inline cim_client_t *e2e_login(const char *gate_env, const char *name, const char *pwd,
                                      uint32_t client_type)
{
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    int rc = cim_login_password(c, name, pwd, client_type, &code);
    if (rc != 0)
        fprintf(stderr, "  login %s: %s, code %u\n", name, cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(code, 200);
    CHECK(cim_user_id(c) > 0);
    return c;
}

/* Register a new unique user and return a client logged in as it; *uid and name (>= 40
 * bytes, may be NULL) receive the user. */
static inline cim_client_t *e2e_new_user(const char *gate_env, const char *tag,
                                         uint32_t client_type, uint64_t *uid, char *name)
{
    char nm[40];
    e2e_uniq(nm, sizeof(nm), tag);
    uint64_t id = e2e_register(gate_env, nm, E2E_PWD);
    cim_client_t *c = e2e_login(gate_env, nm, E2E_PWD, client_type);
    CHECK_EQ_INT(cim_user_id(c), id);
    if (uid)
        *uid = id;
    if (name)
        snprintf(name, 40, "%s", nm);
    return c;
}

/* Run $CIM_TEST_DIR/ctl.sh ACTION NAME; its exit status. */
static inline int e2e_ctl(const char *action, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "bash '%s/ctl.sh' %s %s", e2e_env("CIM_TEST_DIR"), action, name);
    fflush(stdout);
    fflush(stderr);
    int st = system(cmd);
    return st == -1 ? -1 : WEXITSTATUS(st);
}

/* A token login on a fresh connection: the result code (0 when there was no answer). */
static inline uint32_t e2e_token_login_code(const char *gate_env, uint64_t uid, const char *token,
                                            uint32_t client_type, cim_client_t **keep)
{
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    cim_login_token(c, uid, token, client_type, &code);
    if (keep)
        *keep = c;
    else
        cim_client_free(c);
    return code;
}

#endif
