/* e2e_pgate: a private msg_gate for one test (header-only; include after ../test.h and
 * e2e_common.h). Started from $CIM_BIN/msg_gate on free ports with "--name=value" flags of the
 * test's own, pointing at the stack's Redis so it finds the stack's logics; its log goes to
 * $CIM_TEST_DIR/log/TAG-PORT.log. Used by e2e_hostile (limits at their defaults) and e2e_tls
 * (TLS ports). */
#ifndef CIM_E2E_PGATE_H
#define CIM_E2E_PGATE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "e2e_http.h"

typedef struct pgate_s {
    pid_t pid;
    int port, metrics, nn;
    int stop_wait_ms; /* how long pgate_stop waits for the exit after SIGTERM */
    char addr[64], maddr[64];
    char log[512];
} pgate_t;

/* A TCP port free on 127.0.0.1 and 0.0.0.0 right now, picked at random in 20000-32000 like
 * the runner's (below the kernel's ephemeral range: the kernel's own pick, bind to port 0,
 * is often taken a moment later as the source port of some connection on a busy machine),
 * never the same twice in one process. */
static inline int pgate_free_port(void)
{
    static unsigned seed;
    static int picked[256];
    static int npicked;
    if (!seed)
        seed = (unsigned) getpid() * 2654435761u ^ (unsigned) e2e_now_ms();
    for (int tries = 0; tries < 20000; tries++) {
        int p = 20000 + (int) (rand_r(&seed) % 12001), ok = 1;
        for (int i = 0; i < npicked && ok; i++)
            ok = picked[i] != p;
        for (int a = 0; a < 2 && ok; a++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            CHECK(fd >= 0);
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t) p),
                                     .sin_addr.s_addr = htonl(a ? INADDR_ANY : INADDR_LOOPBACK)};
            ok = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
            close(fd);
        }
        if (ok) {
            if (npicked < (int) (sizeof(picked) / sizeof(picked[0])))
                picked[npicked++] = p;
            return p;
        }
    }
    CHECK(0);
    return -1;
}

/* gates started and not stopped yet: a failing CHECK exits the case, and the atexit handler
 * stops them so that no private gate outlives its test */
static pid_t pgate__live[16];

static inline void pgate__reap(void)
{
    for (size_t i = 0; i < sizeof(pgate__live) / sizeof(pgate__live[0]); i++) {
        if (pgate__live[i] <= 0)
            continue;
        kill(pgate__live[i], SIGTERM);
        int64_t until = e2e_now_ms() + 5000;
        pid_t w;
        while ((w = waitpid(pgate__live[i], NULL, WNOHANG)) == 0 && e2e_now_ms() < until)
            e2e_sleep_ms(50);
        if (w == 0) { /* still running: not reaped, so the pid is still this gate's */
            kill(pgate__live[i], SIGKILL);
            waitpid(pgate__live[i], NULL, 0);
        }
        pgate__live[i] = 0;
    }
}

static inline void pgate__track(pid_t pid, int on)
{
    static int registered;
    if (!registered) {
        atexit(pgate__reap);
        registered = 1;
    }
    for (size_t i = 0; i < sizeof(pgate__live) / sizeof(pgate__live[0]); i++)
        if (on ? pgate__live[i] <= 0 : pgate__live[i] == pid) {
            pgate__live[i] = on ? pid : 0;
            return;
        }
}

/* Fork and exec msg_gate with the usual flags plus extra (NULL-terminated) and, when
 * use_prefix is set and the runner exported STACK_PREFIX (VALGRIND=1: valgrind with its log in
 * the stack's log directory, checked by the runner), under that prefix ("{name}" becomes
 * TAG-PORT). Output goes to g->log. Does not wait for anything. */
static inline void pgate_spawn(pgate_t *g, const char *tag, int use_prefix,
                               const char *const *extra)
{
    memset(g, 0, sizeof(*g));
    g->port = pgate_free_port();
    g->metrics = pgate_free_port();
    g->stop_wait_ms = 10000;
    int nn = g->nn = pgate_free_port();
    snprintf(g->addr, sizeof(g->addr), "127.0.0.1:%d", g->port);
    snprintf(g->maddr, sizeof(g->maddr), "127.0.0.1:%d", g->metrics);
    char exe[512], a_port[64], a_nn[96], a_met[64], a_redis[96], name[96];
    snprintf(exe, sizeof(exe), "%s/msg_gate", e2e_env("CIM_BIN"));
    snprintf(a_port, sizeof(a_port), "--gate_port=%d", g->port);
    snprintf(a_nn, sizeof(a_nn), "--gate_nn_addr=tcp://127.0.0.1:%d", nn);
    snprintf(a_met, sizeof(a_met), "--gate_metrics_port=%d", g->metrics);
    snprintf(a_redis, sizeof(a_redis), "--redis_addr=127.0.0.1:%s", e2e_env("CIM_REDIS_PORT"));
    snprintf(name, sizeof(name), "%s-%d", tag, g->port);
    snprintf(g->log, sizeof(g->log), "%s/log/%s.log", e2e_env("CIM_TEST_DIR"), name);

    /* the prefix words, "{name}" replaced */
    static char pfx[4096];
    const char *argv[96];
    int n = 0;
    const char *sp = use_prefix ? getenv("STACK_PREFIX") : NULL;
    if (sp && *sp) {
        size_t o = 0;
        for (const char *p = sp; *p && o < sizeof(pfx) - 128;) {
            if (!strncmp(p, "{name}", 6)) {
                o += (size_t) snprintf(pfx + o, sizeof(pfx) - o, "%s", name);
                p += 6;
            } else {
                pfx[o++] = *p++;
            }
        }
        pfx[o] = '\0';
        for (char *save = NULL, *w = strtok_r(pfx, " ", &save); w && n < 40;
             w = strtok_r(NULL, " ", &save))
            argv[n++] = w;
        g->stop_wait_ms = 90000; /* valgrind's leak check takes a while */
    }
    const char *base[] = {exe,
                          a_port,
                          "--gate_ws_port=0",
                          a_nn,
                          a_met,
                          a_redis,
                          "--gate_host=127.0.0.1",
                          "--gate_auth_timeout=2",
                          "--log_level=info",
                          "--gate_web_root="};
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[n++] = base[i];
    for (int i = 0; extra && extra[i] && n < 95; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    g->pid = fork();
    CHECK(g->pid >= 0);
    if (g->pid == 0) {
        int fd = open(g->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(argv[0], (char *const *) argv);
        _exit(127);
    }
    pgate__track(g->pid, 1);
}

/* The gate's process was reaped by the caller (waitpid): forget it. */
static inline void pgate_forget(pgate_t *g)
{
    pgate__track(g->pid, 0);
    g->pid = 0;
}

/* Wait until the gate's /healthz reports both stack logics (the test fails after wait_ms). */
static inline void pgate_wait_ready(pgate_t *g, int wait_ms)
{
    int64_t until = e2e_now_ms() + wait_ms;
    for (;;) {
        if (waitpid(g->pid, NULL, WNOHANG) != 0) {
            fprintf(stderr, "  private gate on %d exited (see %s)\n", g->port, g->log);
            pgate_forget(g);
            CHECK(0);
        }
        e2e_http_rsp_t r;
        if (e2e_http(g->maddr, "GET", "/healthz", NULL, NULL, &r) == 0) {
            long long k = e2e_json_int(&r, "logics", -1);
            e2e_http_rsp_free(&r);
            if (k >= 2)
                break;
        }
        if (e2e_now_ms() > until) {
            fprintf(stderr, "  private gate on %d: no \"logics\":2 in %d s (see %s)\n", g->port,
                    wait_ms / 1000, g->log);
            CHECK(0);
        }
        e2e_sleep_ms(200);
    }
}

/* Wait until both stack logics (logs logic1.log, logic2.log) have connected to the gate's
 * delivery endpoint: until then a logic that has not yet read the registry drops deliveries
 * to users of this gate. The test fails after wait_ms. */
static inline void pgate_wait_known(pgate_t *g, int wait_ms)
{
    char needle[96];
    snprintf(needle, sizeof(needle), " at tcp://127.0.0.1:%d", g->nn);
    int64_t until = e2e_now_ms() + wait_ms;
    for (int i = 1; i <= 2; i++) {
        char path[600], line[1024];
        snprintf(path, sizeof(path), "%s/log/logic%d.log", e2e_env("CIM_TEST_DIR"), i);
        for (int found = 0; !found;) {
            FILE *f = fopen(path, "r");
            while (f && !found && fgets(line, sizeof(line), f))
                found = strstr(line, needle) != NULL;
            if (f)
                fclose(f);
            if (found)
                break;
            if (e2e_now_ms() > until) {
                fprintf(stderr,
                        "  logic%d does not know the private gate on %d (no \"%s\" in %s)\n", i,
                        g->port, needle, path);
                CHECK(0);
            }
            e2e_sleep_ms(100);
        }
    }
}

/* start msg_gate with extra "--name=value" flags (NULL-terminated); wait for logics 2 */
static inline void pgate_start(pgate_t *g, const char *const *extra)
{
    pgate_spawn(g, "hostile", 0, extra);
    pgate_wait_ready(g, 60000);
}

/* SIGTERM, wait (SIGKILL after g->stop_wait_ms). The exit status (0 = clean), or -1 when it
 * had to be killed or died of a signal. */
static inline int pgate_stop(pgate_t *g)
{
    if (g->pid <= 0)
        return -1;
    kill(g->pid, SIGTERM);
    int64_t until = e2e_now_ms() + (g->stop_wait_ms > 0 ? g->stop_wait_ms : 10000);
    int st = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(g->pid, &st, WNOHANG);
        if (w == g->pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        if (w < 0)
            break;
        if (e2e_now_ms() > until) {
            kill(g->pid, SIGKILL);
            waitpid(g->pid, NULL, 0);
            break;
        }
        e2e_sleep_ms(50);
    }
    pgate__track(g->pid, 0);
    g->pid = 0;
    return rc;
}

/* A blocking TCP socket connected to "IP:PORT", or -1. */
static inline int raw_connect(const char *addr)
{
    char host[64];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    CHECK(colon != NULL);
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the peer closed fd (EOF or reset) within ms, discarding what it sends */
static inline int raw_closed_within(int fd, int ms)
{
    int64_t until = e2e_now_ms() + ms;
    char buf[65536];
    for (;;) {
        int left = (int) (until - e2e_now_ms());
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r < 0 && errno != EINTR)
            return 1;
        if (r <= 0)
            continue;
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
            return 1;
    }
}

#endif
