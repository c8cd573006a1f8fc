/* e2e_msg_common: helpers for the messaging end-to-end tests (header-only; include after
 * ../test.h and e2e_common.h). */
#ifndef CIM_E2E_MSG_COMMON_H
#define CIM_E2E_MSG_COMMON_H

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "e2e_http.h"

#define MSG_HB_MS 1000 /* the test stack closes connections idle for 3 s */

/* A new user logged in on gate_env with a heartbeat short enough for the test stack. */
static inline cim_client_t *msg_user(const char *gate_env, const char *tag, uint32_t ct,
                                     uint64_t *uid, char *name)
{
    cim_client_t *c = e2e_new_user(gate_env, tag, ct, uid, name);
    cim_set_heartbeat_interval(c, MSG_HB_MS);
    return c;
}

/* Like msg_user, but a registration answered STORAGE_UNAVAILABLE (3006) is tried again for up
 * to 10 s (a stack whose MariaDB was restarted by an earlier test: see the report). */
static inline cim_client_t *msg_user_patient(const char *gate_env, const char *tag, uint32_t ct,
                                             uint64_t *uid)
{
    char nm[40];
    e2e_uniq(nm, sizeof(nm), tag);
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    int64_t until = e2e_now_ms() + 10000;
    while (cim_register(c, nm, E2E_PWD, nm, &code, NULL) != 0 && code == 3006 &&
           e2e_now_ms() < until) {
        fprintf(stderr, "  register %s: 3006, again\n", nm);
        e2e_sleep_ms(100);
    }
    CHECK_EQ_INT(code, 200);
    cim_client_free(c);
    c = e2e_connect(gate_env);
    while (cim_login_password(c, nm, E2E_PWD, ct, &code) != 0 && code == 3006 &&
           e2e_now_ms() < until) {
        fprintf(stderr, "  login %s: 3006, again\n", nm);
        e2e_sleep_ms(100);
    }
    CHECK_EQ_INT(code, 200);
    cim_set_heartbeat_interval(c, MSG_HB_MS);
    if (uid)
        *uid = cim_user_id(c);
    return c;
}

/* Another device of an existing user. */
static inline cim_client_t *msg_device(const char *gate_env, const char *name, uint32_t ct)
{
    cim_client_t *c = e2e_login(gate_env, name, E2E_PWD, ct);
    cim_set_heartbeat_interval(c, MSG_HB_MS);
    return c;
}

/* The next 0x0301 delivery within timeout_ms, unpacked (caller frees), or NULL. */
static inline CIM__Def__CIMMsgData *msg_next(cim_client_t *c, int timeout_ms)
{
    cim_packet_t *p = NULL;
    if (cim_next_push(c, IM_CMD_MSG_DATA, timeout_ms, &p) != 0)
        return NULL;
    CIM__Def__CIMMsgData *d =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(p, &cim__def__cimmsg_data__descriptor);
    cim_packet_free(p);
    return d;
}

/* The next push with command cmd, unpacked as desc (caller frees), or NULL. */
static inline ProtobufCMessage *msg_next_cmd(cim_client_t *c, uint16_t cmd,
                                             const ProtobufCMessageDescriptor *desc, int timeout_ms)
{
    cim_packet_t *p = NULL;
    if (cim_next_push(c, cmd, timeout_ms, &p) != 0)
        return NULL;
    ProtobufCMessage *m = cim_packet_unpack(p, desc);
    cim_packet_free(p);
    return m;
}

/* Consume c's 0x0301 pushes until the one with server_msg_id id: 1, or 0 on timeout. The
 * push means the recipient's inbox row is committed (the ack only means the sender's). */
static inline int msg_wait_push(cim_client_t *c, uint64_t id, int timeout_ms)
{
    int64_t until = e2e_now_ms() + timeout_ms;
    for (;;) {
        int left = (int) (until - e2e_now_ms());
        if (left <= 0)
            return 0;
        CIM__Def__CIMMsgData *d = msg_next(c, left);
        if (!d)
            return 0;
        int hit = d->server_msg_id == id;
        cim__def__cimmsg_data__free_unpacked(d, NULL);
        if (hit)
            return 1;
    }
}

/* Read for ms and count the 0x0301 that arrive (they are consumed). */
static inline int msg_count_for(cim_client_t *c, int ms)
{
    int n = 0;
    int64_t until = e2e_now_ms() + ms;
    for (;;) {
        int left = (int) (until - e2e_now_ms());
        if (left <= 0)
            break;
        cim_packet_t *p = NULL;
        if (cim_next_push(c, IM_CMD_MSG_DATA, left, &p) == 0) {
            n++;
            cim_packet_free(p);
        } else if (!cim_is_connected(c)) {
            break;
        }
    }
    return n;
}

/* Send a text and require ack OK; the ack goes to *ack (may be NULL). */
static inline uint64_t msg_send_ok(cim_client_t *c, uint64_t to, const char *text, cim_ack_t *ack)
{
    cim_ack_t a;
    int rc = cim_send_text(c, to, text, &a);
    if (rc != 0)
        fprintf(stderr, "  send to %" PRIu64 ": %s, res %u\n", to, cim_strerror(rc), a.res_code);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(a.res_code, CIM_RES_OK);
    CHECK(a.server_msg_id > 0);
    if (ack)
        *ack = a;
    return a.server_msg_id;
}

static inline int msg_body_is(const CIM__Def__CIMMsgData *d, const char *text)
{
    return d && d->msg_data.len == strlen(text) &&
           memcmp(d->msg_data.data, text, d->msg_data.len) == 0;
}

/* Run ctl.sh ACTION NAME in a child while the clients keep their connections alive
 * (heartbeats); pushes that arrive meanwhile are queued. The ctl exit status. */
static inline int msg_ctl(const char *action, const char *name, cim_client_t **cs, int n)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* exec, not return: under valgrind a forked child that exits normally is
         * leak-checked with the parent's live clients and fails with 99 */
        char path[1024];
        snprintf(path, sizeof(path), "%s/ctl.sh", e2e_env("CIM_TEST_DIR"));
        execlp("bash", "bash", path, action, name, (char *) NULL);
        _exit(127);
    }
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        int polled = 0;
        for (int i = 0; i < n; i++) {
            if (cs[i] && cim_is_connected(cs[i])) {
                cim_poll(cs[i], 0);
                polled = 1;
            }
        }
        e2e_sleep_ms(polled ? 50 : 100);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Wait until both gates' /healthz report `logics` live logics: 1, or 0 on timeout. */
static inline int msg_wait_logics(int logics, int timeout_ms, cim_client_t **cs, int n)
{
    int64_t until = e2e_now_ms() + timeout_ms;
    while (e2e_now_ms() < until) {
        int good = 0;
        const char *gates[2] = {"CIM_GATE1_METRICS", "CIM_GATE2_METRICS"};
        for (int g = 0; g < 2; g++) {
            e2e_http_rsp_t r;
            if (e2e_http(e2e_env(gates[g]), "GET", "/healthz", NULL, NULL, &r) == 0) {
                if (e2e_json_int(&r, "logics", -1) == logics)
                    good++;
                e2e_http_rsp_free(&r);
            }
        }
        if (good == 2)
            return 1;
        for (int i = 0; i < n; i++)
            if (cs[i] && cim_is_connected(cs[i]))
                cim_poll(cs[i], 0);
        e2e_sleep_ms(100);
    }
    return 0;
}

/* Output of a mariadb query (batch, no column names), at most n-1 bytes; -1 if it failed. */
static inline int msg_sql(const char *sql, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "mariadb -S '%s' -uroot -N -B -e \"%s\" 2>&1",
             e2e_env("CIM_MYSQL_SOCK"), sql);
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t len = fread(out, 1, n - 1, f);
    out[len] = '\0';
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "  sql failed: %s\n  -> %s\n", sql, out);
        return -1;
    }
    return 0;
}

/* A single number from a query, or -1. */
static inline long long msg_sql_num(const char *sql)
{
    char out[256];
    if (msg_sql(sql, out, sizeof(out)) != 0)
        return -1;
    return strtoll(out, NULL, 10);
}

static inline uint64_t msg_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline unsigned msg_shard(uint64_t uid)
{
    return (unsigned) (msg_fmix64(uid) % 4);
}

/* 1 when the environment asks for a light run (valgrind, CIM_TEST_LIGHT). */
static inline int msg_light(void)
{
    const char *v = getenv("VALGRIND"), *l = getenv("CIM_TEST_LIGHT");
    return (v && !strcmp(v, "1")) || (l && *l && strcmp(l, "0") != 0);
}

#endif
