/* End-to-end: the `cim` console ($CIM_BIN/cim) in batch mode for groups (group ..., groups,
 * gsend, 0x0515 lines), the online list and presence (online, who, subscribe), and the admin
 * subcommands that call the business API (cim admin ...). */
#include <poll.h>

#include "../test.h"
#include "e2e_api_util.h"

typedef struct run_s {
    char out[32768];
    int status; /* exit status, -1 if it did not exit normally */
} run_t;

static const run_t *last_run;

static void print_last_run(void)
{
    if (test_failed_in_case_ && last_run)
        fprintf(stderr, "  --- last cim output (exit %d):\n%s  ---\n", last_run->status,
                last_run->out);
}

/* `printf '%s' script | cim --gate GATE --heartbeat 1 ARGS`, output captured */
static FILE *console_start(const char *script, const char *gate_env, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | '%s/cim' --gate %s --heartbeat 1 %s 2>&1",
             script, e2e_env("CIM_BIN"), e2e_env(gate_env), args);
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    return f;
}

/* Read the output to the end; meanwhile keep `keep` (may be NULL) alive with heartbeats. */
static void console_finish(FILE *f, run_t *r, cim_client_t *keep)
{
    size_t n = 0;
    int fd = fileno(f);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t k = read(fd, r->out + n, sizeof(r->out) - 1 - n);
            if (k <= 0)
                break;
            n += (size_t) k;
            if (n == sizeof(r->out) - 1)
                break;
        }
        if (keep)
            cim_poll(keep, 0);
    }
    r->out[n] = '\0';
    int st = pclose(f);
    r->status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    if (!last_run)
        atexit(print_last_run);
    last_run = r;
}

static void console_run(const char *script, const char *gate_env, const char *args, run_t *r)
{
    console_finish(console_start(script, gate_env, args), r, NULL);
}

static int has(const run_t *r, const char *s)
{
    if (strstr(r->out, s))
        return 1;
    fprintf(stderr, "  output lacks \"%s\"\n", s);
    return 0;
}

#define HAS(r, ...)                                                                                \
    do {                                                                                           \
        char want_[512];                                                                           \
        snprintf(want_, sizeof(want_), __VA_ARGS__);                                               \
        CHECK(has((r), want_));                                                                    \
    } while (0)

/* a line part "...(uid)SUFFIX" or "uid SUFFIX" at a line start */
static int has_either(const run_t *r, unsigned long long id, const char *suffix)
{
    char a[128], b[128];
    snprintf(a, sizeof(a), "(%llu)%s", id, suffix);
    snprintf(b, sizeof(b), "\n%llu%s", id, suffix);
    if (strstr(r->out, a) || strstr(r->out, b))
        return 1;
    fprintf(stderr, "  output lacks \"%s\" or \"%s\"\n", a, b + 1);
    return 0;
}

typedef struct usr_s {
    char name[40];
    unsigned long long id;
} usr_t;

static void mk(usr_t *u, const char *tag)
{
    e2e_uniq(u->name, sizeof(u->name), tag);
    u->id = e2e_register("CIM_GATE1", u->name, E2E_PWD);
}

TEST(console_group_flow)
{
    usr_t a, b, c, d;
    mk(&a, "cga");
    mk(&b, "cgb");
    mk(&c, "cgc");
    mk(&d, "cgd");
    char script[2048];
    run_t ra, rb, rc, rd;

    snprintf(script, sizeof(script), "login %s %s\ngroup create team %llu %llu\n", a.name, E2E_PWD,
             b.id, c.id);
    console_run(script, "CIM_GATE1", "", &ra);
    CHECK_EQ_INT(ra.status, 0);
    const char *p = strstr(ra.out, "group created: ");
    CHECK(p != NULL);
    unsigned long long gid = strtoull(p + 15, NULL, 10);
    CHECK(gid > 0);
    HAS(&ra, "group created: %llu \"team\", 3 member(s)\n", gid);

    /* b watches from gate2 while the others act */
    snprintf(script, sizeof(script), "login %s %s\nsleep 9\ngroups\ngroup members %llu\n", b.name,
             E2E_PWD, gid);
    FILE *fb = console_start(script, "CIM_GATE2", "");
    e2e_sleep_ms(1500);

    snprintf(script, sizeof(script),
             "login %s %s\ngroup info %llu\ngroup members %llu\ngsend %llu hello team, all\n"
             "group invite %llu %llu\ngroup kick %llu %llu\ngroups\n",
             a.name, E2E_PWD, gid, gid, gid, gid, d.id, gid, c.id);
    console_run(script, "CIM_GATE1", "", &ra);
    CHECK_EQ_INT(ra.status, 0);
    HAS(&ra, "group %llu \"team\": owner ", gid);
    HAS(&ra, "%llu, type ", a.id);
    HAS(&ra, "group %llu: 3 member(s): ", gid);
    HAS(&ra, "sent to group %llu: msg ", gid);
    HAS(&ra, "invited to group %llu: ", gid);
    HAS(&ra, "removed from group %llu: ", gid);
    HAS(&ra, "1 group(s)\n  group %llu version ", gid);
    HAS(&ra, "\"team\"\n");

    snprintf(script, sizeof(script), "login %s %s\ngroup members %llu\ngroup exit %llu\n", d.name,
             E2E_PWD, gid, gid);
    console_run(script, "CIM_GATE2", "", &rd);
    CHECK_EQ_INT(rd.status, 0);
    HAS(&rd, "group %llu: 3 member(s): ", gid);
    HAS(&rd, "left group %llu\n", gid);

    snprintf(script, sizeof(script), "login %s %s\ngroup join %llu\ngroups\n", c.name, E2E_PWD,
             gid);
    console_run(script, "CIM_GATE1", "", &rc);
    CHECK_EQ_INT(rc.status, 0);
    HAS(&rc, "joined group %llu\n", gid);
    HAS(&rc, "1 group(s)\n");

    /* not the owner: refused, exit status 1 */
    snprintf(script, sizeof(script), "login %s %s\ngroup disband %llu\nwhoami\n", c.name, E2E_PWD,
             gid);
    console_run(script, "CIM_GATE1", "", &rc);
    CHECK_EQ_INT(rc.status, 1);
    HAS(&rc, "error: group disband failed: 3002 PERMISSION_DENIED\n");
    CHECK(strstr(rc.out, "uid ") == NULL || strstr(rc.out, "client type") == NULL);

    run_t rbo;
    console_finish(fb, &rbo, NULL);
    CHECK_EQ_INT(rbo.status, 0);
    /* the group message and the member changes, readably */
    HAS(&rbo, " in group %llu seq ", gid);
    HAS(&rbo, "] hello team, all\n");
    HAS(&rbo, "[group %llu: ", gid);
    HAS(&rbo, " added %llu]", d.id);
    HAS(&rbo, " removed %llu]", c.id);
    CHECK(strstr(rbo.out, " left]") != NULL);
    HAS(&rbo, "%llu left]", d.id);
    HAS(&rbo, "%llu joined]", c.id);
    HAS(&rbo, "group %llu: 3 member(s): ", gid); /* a, b, c */

    /* the owner disbands; the group is gone */
    snprintf(script, sizeof(script),
             "login %s %s\ngroup disband %llu\ngroups\ngroup members %llu\n", a.name, E2E_PWD, gid,
             gid);
    console_run(script, "CIM_GATE1", "--keep-going", &ra);
    CHECK_EQ_INT(ra.status, 1);
    HAS(&ra, "disbanded group %llu\n", gid);
    HAS(&ra, "0 group(s)\n");
    HAS(&ra, "error: group members failed: ");

    /* usage errors */
    console_run("group frob 1\ngroup invite 5\ngroup info x\ngsend 0 hi\n", "CIM_GATE1",
                "--keep-going", &rb);
    CHECK_EQ_INT(rb.status, 1);
    CHECK(has(&rb, "error: usage: group create"));
    CHECK(has(&rb, "error: bad id 'x'"));
    CHECK(has(&rb, "error: bad id '0'"));
}

TEST(console_online_who_subscribe)
{
    usr_t s, u1, u2;
    mk(&s, "cps");
    mk(&u1, "cpu");
    mk(&u2, "cpu");
    char script[1024];
    snprintf(script, sizeof(script),
             "login %s %s\nsubscribe\nsleep 4\nonline\nwho %llu\nwho %llu\nwho %llu\n"
             "unsubscribe\n",
             s.name, E2E_PWD, u1.id, u2.id, s.id);
    FILE *f = console_start(script, "CIM_GATE1", "");
    e2e_sleep_ms(1500);
    cim_client_t *c1 = au_login("CIM_GATE2", u1.name, IM_CT_ANDROID);
    cim_client_t *c2 = au_login("CIM_GATE1", u2.name, IM_CT_WEB);
    e2e_sleep_ms(500);
    cim_poll(c1, 0);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_logout(c2, &code), 0);
    run_t r;
    console_finish(f, &r, c1);
    CHECK_EQ_INT(r.status, 0);
    HAS(&r, "subscribed to presence changes (");
    HAS(&r, "[online] %llu type 1\n", u1.id);
    HAS(&r, "[online] %llu type 3\n", u2.id);
    HAS(&r, "[offline] %llu type 3\n", u2.id);
    CHECK(strstr(r.out, "online: ") != NULL);
    HAS(&r, " user(s) in total; ");
    /* "name(uid)" when the online list carried the name, else "uid" */
    CHECK(has_either(&r, u1.id, " is online; client types seen: 1\n"));
    HAS(&r, "%llu is offline\n", u2.id);
    CHECK(has_either(&r, s.id, " is online\n"));
    HAS(&r, "unsubscribed from presence changes\n");
    CHECK(strstr(r.out, "error") == NULL);
    cim_client_free(c1);
    cim_client_free(c2);
}

/* `cim admin --api http://API --api-key-file FILE ARGS 2>&1` */
static void admin_run(const char *args, const char *key_opt, run_t *r)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s/cim' admin --api http://%s %s %s 2>&1", e2e_env("CIM_BIN"),
             e2e_env("CIM_API"), key_opt, args);
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    console_finish(f, r, NULL);
}

static unsigned long long json_field(const run_t *r, const char *name)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": ", name);
    const char *p = strstr(r->out, k);
    return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

TEST(console_admin)
{
    char keyfile[] = "/tmp/cim-admin-key.XXXXXX", opt[128];
    int fd = mkstemp(keyfile);
    CHECK(fd >= 0);
    const char *key = e2e_env("CIM_API_KEY");
    CHECK_EQ_INT(write(fd, key, strlen(key)), (long long) strlen(key));
    CHECK_EQ_INT(write(fd, "\n", 1), 1);
    close(fd);
    snprintf(opt, sizeof(opt), "--api-key-file %s", keyfile);
    run_t r;
    char args[512], name[40];

    e2e_uniq(name, sizeof(name), "cadm");
    snprintf(args, sizeof(args), "user-add %s %s \"Admin Made\"", name, E2E_PWD);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    unsigned long long uid = json_field(&r, "user_id");
    CHECK(uid > 0);
    CHECK(has(&r, "\"token\": \""));
    CHECK(has(&r, "\"error_code\": 0"));
    admin_run(args, opt, &r); /* again: 409 */
    CHECK_EQ_INT(r.status, 1);
    CHECK(has(&r, "error: HTTP 409"));
    CHECK(has(&r, "(error_code 9000)"));

    /* token -> a console token login works */
    snprintf(args, sizeof(args), "token %llu", uid);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    const char *t = strstr(r.out, "\"token\": \"");
    CHECK(t != NULL);
    char token[512];
    CHECK_EQ_INT(sscanf(t + 10, "%511[^\"]", token), 1);
    char script[1024];
    snprintf(script, sizeof(script), "login-token %llu %s\nwhoami\n", uid, token);
    run_t rc;
    console_run(script, "CIM_GATE2", "", &rc);
    CHECK_EQ_INT(rc.status, 0);
    HAS(&rc, "logged in as uid %llu\n", uid);
    /* token-rotate: the old token stops working */
    snprintf(args, sizeof(args), "token-rotate %llu", uid);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(!strstr(r.out, token));
    console_run(script, "CIM_GATE2", "", &rc);
    CHECK_EQ_INT(rc.status, 1);
    CHECK(has(&rc, "error: login failed: 2002"));

    /* online, push, kick */
    snprintf(args, sizeof(args), "online %llu", uid);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(has(&r, "\"online\": false"));
    cim_client_t *c = au_login("CIM_GATE1", name, IM_CT_IOS);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(has(&r, "\"online\": true"));
    CHECK(has(&r, "\"client_types\": [\n    2\n  ]"));
    admin_run("online-count", opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(json_field(&r, "online_users") >= 1);
    CHECK(json_field(&r, "connections") >= 1);

    char text[128];
    au_text(text, sizeof(text), "from the admin");
    snprintf(args, sizeof(args), "push %llu %s", uid, text);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(has(&r, "\"online\": 1"));
    CHECK(has(&r, "\"stored\": 1"));
    uint64_t seq = 0;
    CHECK(au_msg(c, text, 5000, &seq, NULL));
    CHECK(seq > 0);
    au_text(text, sizeof(text), "transient admin");
    snprintf(args, sizeof(args), "push %llu,%llu --transient %s", uid, uid, text);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(has(&r, "\"stored\": 0"));
    CHECK(au_msg(c, text, 5000, &seq, NULL));
    CHECK_EQ_INT(seq, 0);
    au_text(text, sizeof(text), "to all");
    snprintf(args, sizeof(args), "push all %s", text);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(au_msg(c, text, 5000, NULL, NULL));

    snprintf(args, sizeof(args), "kick %llu", uid);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(has(&r, "\"kicked\": 1"));
    CHECK_EQ_INT(cim_wait_closed(c, 5000), 1);
    CHECK_EQ_INT(cim_kick_reason(c), IM_KICK_API);
    cim_client_free(c);

    /* user-import, group-create, group-members */
    unsigned long long imp = uid + 500000000ULL + (unsigned long long) (e2e_now_ms() % 100000000);
    snprintf(args, sizeof(args), "user-import %llu Imported", imp);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(json_field(&r, "user_id"), imp);
    snprintf(args, sizeof(args), "group-create %llu \"admin group\" %llu", uid, imp);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    unsigned long long gid = json_field(&r, "group_id");
    CHECK(gid > 0);
    snprintf(args, sizeof(args), "group-members %llu", gid);
    admin_run(args, opt, &r);
    CHECK_EQ_INT(r.status, 0);
    HAS(&r, "    %llu", uid);
    HAS(&r, "    %llu", imp);

    /* errors: unknown user, wrong key, no server, bad usage */
    admin_run("token 9007199254000000", opt, &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(has(&r, "error: HTTP 404: "));
    CHECK(has(&r, "(error_code 9002)"));
    admin_run("group-members 9007199254000001", opt, &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(has(&r, "error: HTTP 404"));
    admin_run("online-count", "--api-key not-the-key", &r);
    CHECK_EQ_INT(r.status, 1);
    CHECK(has(&r, "error: HTTP 401"));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s/cim' admin --api http://127.0.0.1:1 %s online-count 2>&1",
             e2e_env("CIM_BIN"), opt);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    console_finish(f, &r, NULL);
    CHECK_EQ_INT(r.status, 1);
    CHECK(has(&r, "cannot connect"));
    admin_run("frobnicate", opt, &r);
    CHECK_EQ_INT(r.status, 2);
    admin_run("token", opt, &r);
    CHECK_EQ_INT(r.status, 2);
    admin_run("kick abc", opt, &r);
    CHECK_EQ_INT(r.status, 2);
    admin_run("online-count", "--api-key-file /nonexistent/key", &r);
    CHECK_EQ_INT(r.status, 2);
    unlink(keyfile);
}

TEST_MAIN()
