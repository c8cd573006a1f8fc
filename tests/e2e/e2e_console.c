/* End-to-end: the `cim` console client ($CIM_BIN/cim) in batch mode against a running stack:
 * result lines, exit status, pushes printed as they arrive, auto-reconnect. */
#include "../test.h"
#include "e2e_common.h"

typedef struct run_s {
    char out[16384];
    int status; /* exit status, -1 if it did not exit normally */
} run_t;

/* Start `printf '%s' script | cim ARGS` with output captured; read it with console_finish. */
static FILE *console_start(const char *script, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | '%s/cim' --gate %s %s 2>&1", script,
             e2e_env("CIM_BIN"), e2e_env("CIM_GATE1"), args);
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    return f;
}

static const run_t *last_run; /* printed when the case fails */

static void print_last_run(void)
{
    if (test_failed_in_case_ && last_run)
        fprintf(stderr, "  --- last cim output (exit %d):\n%s  ---\n", last_run->status,
                last_run->out);
}

static void console_finish(FILE *f, run_t *r)
{
    size_t n = fread(r->out, 1, sizeof(r->out) - 1, f);
    r->out[n] = '\0';
    int st = pclose(f);
    r->status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    if (!last_run)
        atexit(print_last_run);
    last_run = r;
}

static void console_run(const char *script, const char *args, run_t *r)
{
    console_finish(console_start(script, args), r);
}

TEST(console_register_login_logout)
{
    char name[40], script[1024], want[128];
    e2e_uniq(name, sizeof(name), "con");
    snprintf(script, sizeof(script),
             "help\nregister %s %s Nick\nlogin %s %s\nwhoami\nping\nlogout\nwhoami\n", name,
             E2E_PWD, name, E2E_PWD);
    run_t r;
    console_run(script, "", &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.out, "registered: user_id=") != NULL);
    unsigned long long uid = strtoull(strstr(r.out, "user_id=") + 8, NULL, 10);
    CHECK(uid > 0);
    snprintf(want, sizeof(want), "logged in as %s (uid %llu)\n", name, uid);
    CHECK(strstr(r.out, want) != NULL);
    snprintf(want, sizeof(want), "%s uid %llu, client type 5, connected to", name, uid);
    CHECK(strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "pong from") != NULL);
    CHECK(strstr(r.out, "logged out\nnot logged in\n") != NULL);
    CHECK(strstr(r.out, "error") == NULL);

    /* the token from whoami logs in with login-token, with another client type */
    const char *tok = strstr(r.out, ", token ");
    CHECK(tok != NULL);
    char token[512];
    CHECK_EQ_INT(sscanf(tok + 8, "%511s", token), 1);
    snprintf(script, sizeof(script), "login-token %llu %s\nwhoami\n", uid, token);
    console_run(script, "--client-type 1 --quiet", &r);
    CHECK_EQ_INT(r.status, 0);
    snprintf(want, sizeof(want), "logged in as uid %llu\n", uid);
    CHECK(strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "client type 1") != NULL);
}

TEST(console_failure_exit_status)
{
    char name[40], script[256];
    e2e_uniq(name, sizeof(name), "confail");
    snprintf(script, sizeof(script), "login %s wrong-pw\nwhoami\n", name);
    run_t r;
    console_run(script, "", &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(strstr(r.out, "error: login failed: 2003 LOGIN_INVALID_USER_OR_PWD\n") != NULL);
    CHECK(strstr(r.out, "not logged in") == NULL); /* stopped at the first failure */

    console_run(script, "--keep-going", &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(strstr(r.out, "error: login failed: 2003") != NULL);
    CHECK(strstr(r.out, "not logged in") != NULL);

    console_run("register ab 123\nfrobnicate\nlogin onlyone\n", "--keep-going", &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(strstr(r.out, "error: register failed: 9001 USER_INVALID_PARAMETER\n") != NULL);
    CHECK(strstr(r.out, "error: unknown command 'frobnicate'") != NULL);
    CHECK(strstr(r.out, "error: usage: login <name> <password>") != NULL);

    console_run("whoami\n", "--gate 127.0.0.1:1 --client-type 9", &r);
    CHECK_EQ_INT(r.status, 2);
}

TEST(console_prints_kick)
{
    char name[40], script[256];
    e2e_uniq(name, sizeof(name), "conkick");
    uint64_t uid = e2e_register("CIM_GATE1", name, E2E_PWD);
    snprintf(script, sizeof(script), "login %s %s\nsleep 2.5\nwhoami\n", name, E2E_PWD);
    FILE *f = console_start(script, "");
    e2e_sleep_ms(1000);
    cim_client_t *c = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_PC_WINDOWS);
    run_t r;
    console_finish(f, &r);
    CHECK_EQ_INT(cim_user_id(c), uid);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.out, "[kicked: logged in elsewhere]\n") != NULL);
    CHECK(strstr(r.out, "reconnect") == NULL); /* a kicked client does not come back */
    CHECK(strstr(r.out, "slept 2.5 s\nnot logged in\n") != NULL);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    cim_client_free(c);
}

TEST(console_auto_reconnect)
{
    /* the test stack closes idle connections after 3 s; the console (heartbeat every 25 s)
     * loses its connection and must come back by itself with its token */
    char name[40], script[256], want[128];
    e2e_uniq(name, sizeof(name), "conre");
    uint64_t uid = e2e_register("CIM_GATE1", name, E2E_PWD);
    snprintf(script, sizeof(script), "login %s %s\nsleep 4.5\nwhoami\nping\n", name, E2E_PWD);
    run_t r;
    console_run(script, "", &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strstr(r.out, "[connection to ") != NULL);
    snprintf(want, sizeof(want), "[reconnected to %s as uid %" PRIu64 "]", getenv("CIM_GATE1"),
             uid);
    CHECK(strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "pong from") != NULL);
}

TEST_MAIN()
