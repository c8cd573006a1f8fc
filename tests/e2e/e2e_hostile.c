/* End-to-end hostile clients (issue 8): request rate limits, flooding, per-IP connection rate,
 * password brute force, slowloris and half-open connections, a client that never reads, and
 * a legit client next to garbage.
 *
 * The limits are tested on private msg_gates (e2e_pgate.h) started here from $CIM_BIN with
 * default limits (the stack's gates have them raised), on free ports, pointing at the stack's
 * Redis so they find the stack's logics. Their logs go to $CIM_TEST_DIR/log/hostile-PORT.log. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "../test.h"
#include "e2e_common.h"
#include "e2e_msg_common.h"
#include "e2e_pgate.h"

static long rss_kb(pid_t pid)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", (int) pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* a client on a private gate (address string) */
static cim_client_t *p_connect(const char *addr)
{
    cim_client_t *c = cim_client_new();
    CHECK(c != NULL);
    CHECK_EQ_INT(cim_connect_addr(c, addr, E2E_CONNECT_MS), 0);
    cim_set_call_timeout(c, E2E_CALL_MS);
    return c;
}

static cim_client_t *p_login(const char *addr, const char *name, uint64_t *uid)
{
    cim_client_t *c = p_connect(addr);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code), 0);
    cim_set_heartbeat_interval(c, 5000);
    if (uid)
        *uid = cim_user_id(c);
    return c;
}

static void hdr(uint8_t *h, uint32_t len, uint16_t cmd, uint16_t seq)
{
    h[0] = (uint8_t) (len >> 24);
    h[1] = (uint8_t) (len >> 16);
    h[2] = (uint8_t) (len >> 8);
    h[3] = (uint8_t) len;
    h[4] = 0;
    h[5] = 1;
    h[6] = h[7] = h[8] = h[9] = 0;
    h[10] = (uint8_t) (cmd >> 8);
    h[11] = (uint8_t) cmd;
    h[12] = (uint8_t) (seq >> 8);
    h[13] = (uint8_t) seq;
    h[14] = h[15] = 0;
}

static uint64_t new_user(char *name)
{
    e2e_uniq(name, 40, "hos");
    return e2e_register("CIM_GATE1", name, E2E_PWD);
}

/* ------------------------------------------------------------------ request rate */

/* 300 requests at once on a default gate (burst 200): the excess gets RATE_LIMITED, and the
 * connection works again after a pause */
TEST(rate_limit_burst)
{
    pgate_t g;
    pgate_start(&g, NULL);
    char name[40];
    new_user(name);
    cim_client_t *c = p_login(g.addr, name, NULL);

    CIM__Def__CIMGetLatestMsgIdReq req = CIM__DEF__CIMGET_LATEST_MSG_ID_REQ__INIT;
    req.session_type = CIM_SESSION_SINGLE;
    req.session_id = 1;
    for (int i = 0; i < 300; i++)
        CHECK_EQ_INT(cim_send(c, IM_CMD_LATEST_MSG_ID_REQ, cim_next_seq(c), &req.base), 0);
    int ok = 0, limited = 0, other = 0;
    for (int i = 0; i < 300; i++) {
        ProtobufCMessage *m =
            msg_next_cmd(c, IM_CMD_LATEST_MSG_ID_RSP,
                         &cim__def__cimget_latest_msg_id_rsp__descriptor, E2E_CALL_MS);
        if (!m)
            break;
        uint32_t code = ((CIM__Def__CIMGetLatestMsgIdRsp *) m)->result_code;
        if (code == 0 || code == 200)
            ok++;
        else if (code == IM_ERR_RATE_LIMITED)
            limited++;
        else
            other++;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    fprintf(stderr, "  300 requests: %d ok, %d rate limited, %d other\n", ok, limited, other);
    CHECK_EQ_INT(ok + limited + other, 300);
    CHECK(ok >= 190 && ok <= 260);
    CHECK(limited >= 40);
    CHECK_EQ_INT(other, 0);
    CHECK(cim_is_connected(c));

    /* after a pause: messages; beyond the burst their acks say RATE_LIMITED (4) */
    e2e_sleep_ms(5000);
    uint64_t peer;
    cim_client_t *p = msg_user("CIM_GATE2", "hosp", IM_CT_PC_WINDOWS, &peer, NULL);
    for (int i = 0; i < 300; i++) {
        char cmid[32];
        snprintf(cmid, sizeof(cmid), "rl-%d", i);
        CIM__Def__CIMMsgData d = CIM__DEF__CIMMSG_DATA__INIT;
        d.to_session_id = peer;
        d.client_msg_id = cmid;
        d.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
        d.msg_type = CIM__DEF__CIMMSG_TYPE__kCIM_MSG_TYPE_TEXT;
        d.msg_data.data = (uint8_t *) "x";
        d.msg_data.len = 1;
        CHECK_EQ_INT(cim_send(c, IM_CMD_MSG_DATA, cim_next_seq(c), &d.base), 0);
    }
    int acked = 0, rl = 0, bad = 0;
    for (int i = 0; i < 300; i++) {
        CIM__Def__CIMMsgDataAck *a = (CIM__Def__CIMMsgDataAck *) msg_next_cmd(
            c, IM_CMD_MSG_DATA_ACK, &cim__def__cimmsg_data_ack__descriptor, 15000);
        if (!a)
            break;
        if (a->res_code == CIM_RES_OK)
            acked++;
        else if (a->res_code == CIM_RES_RATE_LIMITED)
            rl++;
        else
            bad++;
        cim__def__cimmsg_data_ack__free_unpacked(a, NULL);
    }
    fprintf(stderr, "  300 messages: %d ok, %d rate limited, %d other\n", acked, rl, bad);
    CHECK_EQ_INT(acked + rl + bad, 300);
    CHECK(rl >= 40);
    CHECK(acked >= 190);
    CHECK_EQ_INT(bad, 0);
    /* a RATE_LIMITED message is not stored: the peer gets exactly the acked ones */
    CHECK_EQ_INT(msg_count_for(p, 3000), acked);

    /* after waiting, it works */
    e2e_sleep_ms(5000);
    CHECK(cim_is_connected(c));
    uint64_t latest = 0;
    uint32_t code = 0;
    CHECK_EQ_INT(cim_latest_msg_id(c, CIM_SESSION_SINGLE, peer, &latest, &code), 0);
    CHECK(latest > 0);
    cim_ack_t ack;
    CHECK_EQ_INT(cim_send_text(c, peer, "after the pause", &ack), 0);
    cim_client_free(c);
    cim_client_free(p);
    pgate_stop(&g);
}

/* a client that keeps flooding is closed */
TEST(flood_closed)
{
    pgate_t g;
    pgate_start(&g, NULL);
    char name[40];
    new_user(name);
    cim_client_t *c = p_login(g.addr, name, NULL);
    char name2[40];
    new_user(name2);
    cim_client_t *other = p_login(g.addr, name2, NULL);

    CIM__Def__CIMGetLatestMsgIdReq req = CIM__DEF__CIMGET_LATEST_MSG_ID_REQ__INIT;
    req.session_type = CIM_SESSION_SINGLE;
    req.session_id = 1;
    int64_t t0 = e2e_now_ms();
    long sent = 0;
    while (e2e_now_ms() - t0 < 30000 && cim_is_connected(c)) {
        for (int i = 0; i < 50; i++) {
            if (cim_send(c, IM_CMD_LATEST_MSG_ID_REQ, cim_next_seq(c), &req.base) != 0)
                break;
            sent++;
        }
        cim_poll(c, 0);
        /* drop what arrives */
        cim_packet_t *p;
        while (cim_next_push(c, 0, 0, &p) == 0)
            cim_packet_free(p);
    }
    int closed = cim_wait_closed(c, 5000);
    fprintf(stderr, "  flood: %ld requests, closed after %.1f s\n", sent,
            (double) (e2e_now_ms() - t0) / 1000.0);
    CHECK(closed);
    /* the other connection on the same gate is fine */
    CHECK_EQ_INT(cim_heartbeat(other, 5000), 0);
    cim_client_free(c);
    cim_client_free(other);
    pgate_stop(&g);
}

/* ------------------------------------------------------------------ connections per IP */

TEST(ip_conn_rate)
{
    pgate_t g;
    const char *extra[] = {"--gate_ip_conn_rate=5", "--gate_ip_conn_burst=10", NULL};
    pgate_start(&g, extra);
    int fds[30], served = 0, refused = 0;
    int64_t t0 = e2e_now_ms();
    for (int i = 0; i < 30; i++) {
        fds[i] = raw_connect(g.addr);
        if (fds[i] < 0) {
            refused++;
            continue;
        }
        /* a heartbeat: a served connection echoes it */
        uint8_t h[16];
        hdr(h, 16, IM_CMD_HEARTBEAT, (uint16_t) (i + 1));
        if (send(fds[i], h, 16, MSG_NOSIGNAL) != 16) {
            refused++;
            continue;
        }
    }
    double secs = (double) (e2e_now_ms() - t0) / 1000.0;
    for (int i = 0; i < 30; i++) {
        if (fds[i] < 0)
            continue;
        uint8_t buf[16];
        size_t got = 0;
        int64_t until = e2e_now_ms() + 3000;
        while (got < 16 && e2e_now_ms() < until) {
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            if (poll(&p, 1, 200) <= 0)
                continue;
            ssize_t r = recv(fds[i], buf + got, 16 - got, 0);
            if (r <= 0)
                break;
            got += (size_t) r;
        }
        if (got == 16)
            served++;
        else
            refused++;
        close(fds[i]);
    }
    int allowed = 10 + (int) (secs * 5) + 1;
    fprintf(stderr, "  30 connections in %.2f s: %d served, %d refused (at most %d allowed)\n",
            secs, served, refused, allowed);
    CHECK(served >= 10);
    CHECK(served <= allowed);
    CHECK(refused >= 30 - allowed);
    /* later, connections are served again */
    e2e_sleep_ms(2500);
    cim_client_t *c = p_connect(g.addr);
    CHECK_EQ_INT(cim_heartbeat(c, 5000), 0);
    cim_client_free(c);
    pgate_stop(&g);
}

/* ------------------------------------------------------------------ brute force */

TEST(password_brute_force)
{
    char name[40];
    new_user(name);
    for (int i = 0; i < 11; i++) {
        cim_client_t *c = e2e_connect(i % 2 ? "CIM_GATE2" : "CIM_GATE1");
        uint32_t code = 0;
        char pw[32];
        snprintf(pw, sizeof(pw), "wrong-pw-%d", i);
        CHECK(cim_login_password(c, name, pw, IM_CT_PC_WINDOWS, &code) != 0);
        CHECK(code == 2003 || code == 3004);
        cim_client_free(c);
    }
    cim_client_t *c = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    CHECK(cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code) != 0);
    CHECK_EQ_INT(code, 3004);
    cim_client_free(c);
    /* another user from the same address is not locked out */
    char other[40];
    new_user(other);
    c = e2e_login("CIM_GATE2", other, E2E_PWD, IM_CT_PC_WINDOWS);
    cim_client_free(c);
}

/* ------------------------------------------------------------------ slow and silent clients */

TEST(slowloris_closed)
{
    pgate_t g;
    pgate_start(&g, NULL);
    int fd = raw_connect(g.addr);
    CHECK(fd >= 0);
    uint8_t h[16];
    hdr(h, 16 + 20, IM_CMD_AUTH_REQ, 1);
    int64_t t0 = e2e_now_ms();
    int sent = 0, closed = 0;
    for (int i = 0; i < 16 && !closed; i++) {
        if (send(fd, h + i, 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
            break;
        }
        sent++;
        closed = raw_closed_within(fd, 300);
    }
    if (!closed)
        closed = raw_closed_within(fd, 5000);
    double secs = (double) (e2e_now_ms() - t0) / 1000.0;
    fprintf(stderr, "  slowloris: %d header bytes sent, closed after %.1f s\n", sent, secs);
    CHECK(closed);
    CHECK(sent < 16);
    CHECK(secs >= 1.0);
    close(fd);
    pgate_stop(&g);
}

TEST(half_open_closed)
{
    pgate_t g;
    pgate_start(&g, NULL);
    int fds[20];
    for (int i = 0; i < 20; i++)
        CHECK((fds[i] = raw_connect(g.addr)) >= 0);
    int64_t t0 = e2e_now_ms();
    for (int i = 0; i < 20; i++) {
        CHECK(raw_closed_within(fds[i], 10000));
        close(fds[i]);
    }
    double secs = (double) (e2e_now_ms() - t0) / 1000.0;
    fprintf(stderr, "  20 silent connections closed after %.1f s\n", secs);
    CHECK(secs >= 1.0 && secs < 10.0);
    pgate_stop(&g);
}

/* the business API's view: 1 when uid has a connection */
static int user_online(uint64_t uid)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/online", uid);
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(e2e_env("CIM_API"), "GET", path, e2e_env("CIM_API_KEY"), NULL, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    int on = r.json && json_is_true(json_object_get(r.json, "online"));
    e2e_http_rsp_free(&r);
    return on;
}

/* a logged-in client that never reads is closed when its queue passes gate_write_queue_max;
 * the gate's memory stays bounded */
TEST(slow_reader_closed)
{
    pgate_t g;
    const char *extra[] = {"--gate_write_queue_max=65536", "--gate_idle_timeout=120", NULL};
    pgate_start(&g, extra);
    char name[40];
    uint64_t ruid = new_user(name);
    cim_client_t *r = p_login(g.addr, name, NULL);
    CHECK(user_online(ruid));
    long rss0 = rss_kb(g.pid);

    uint64_t s;
    cim_client_t *sc = msg_user("CIM_GATE1", "hoss", IM_CT_PC_WINDOWS, &s, NULL);
    static char big[16000];
    memset(big, 'b', sizeof(big));
    int sent = 0, closed = 0;
    int64_t t0 = e2e_now_ms();
    for (int i = 0; i < 2000 && !closed; i++) {
        cim_msg_out_t m = {.to = ruid, .data = big, .len = sizeof(big)};
        CHECK_EQ_INT(cim_send_msg_async(sc, &m, NULL), 0);
        sent++;
        if (cim_unacked(sc) > 50)
            cim_flush(sc, 10000);
        if (i % 50 == 49)
            closed = !user_online(ruid);
    }
    cim_flush(sc, 20000);
    long rss1 = rss_kb(g.pid);
    /* the kernel buffers hold megabytes R never reads: the gate's view (the route) tells */
    for (int t = 0; t < 150 && !closed; t++) {
        closed = !user_online(ruid);
        if (!closed)
            e2e_sleep_ms(100);
    }
    fprintf(stderr,
            "  %d x 16 KB to a client that does not read: closed %d after %.1f s; gate RSS "
            "%ld -> %ld KB\n",
            sent, closed, (double) (e2e_now_ms() - t0) / 1000.0, rss0, rss1);
    CHECK(closed);
    CHECK(rss1 - rss0 < 64 * 1024);
    /* the user can log in again and sync everything */
    cim_client_free(r);
    r = p_login(g.addr, name, NULL);
    cim_client_free(r);
    cim_client_free(sc);
    pgate_stop(&g);
}

/* ------------------------------------------------------------------ a legit client among junk */

TEST(legit_client_undisturbed)
{
    pgate_t g;
    pgate_start(&g, NULL);
    char name[40];
    new_user(name);
    cim_client_t *legit = p_login(g.addr, name, NULL);
    CHECK_EQ_INT(cim_heartbeat(legit, 5000), 0);

    fflush(stdout);
    fflush(stderr);
    pid_t junk = fork();
    CHECK(junk >= 0);
    if (junk == 0) {
        /* garbage senders, slowloris and half-open connections for 8 s */
        int64_t until = e2e_now_ms() + 8000;
        int slow[20];
        for (int i = 0; i < 20; i++)
            slow[i] = raw_connect(g.addr);
        unsigned seed = 1;
        int k = 0;
        while (e2e_now_ms() < until) {
            int fd = raw_connect(g.addr);
            if (fd >= 0) {
                uint8_t buf[512];
                for (size_t i = 0; i < sizeof(buf); i++)
                    buf[i] = (uint8_t) rand_r(&seed);
                if (k % 3 == 0)
                    hdr(buf, 200000, IM_CMD_AUTH_REQ, 1); /* too big */
                else if (k % 3 == 1)
                    hdr(buf, 64, IM_CMD_AUTH_REQ, 1); /* a body that does not parse */
                send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
                close(fd);
            }
            for (int i = 0; i < 20; i++)
                if (slow[i] >= 0) {
                    uint8_t b = 0;
                    send(slow[i], &b, 1, MSG_NOSIGNAL);
                }
            k++;
            e2e_sleep_ms(5);
        }
        _exit(0);
    }
    int64_t until = e2e_now_ms() + 8000, worst = 0;
    int n = 0, fails = 0;
    while (e2e_now_ms() < until) {
        int64_t t = e2e_now_ms();
        if (cim_heartbeat(legit, 5000) != 0)
            fails++;
        int64_t d = e2e_now_ms() - t;
        if (d > worst)
            worst = d;
        n++;
        e2e_sleep_ms(100);
    }
    waitpid(junk, NULL, 0);
    fprintf(stderr, "  %d heartbeats among junk: %d failed, worst %" PRId64 " ms\n", n, fails,
            worst);
    CHECK_EQ_INT(fails, 0);
    CHECK(worst < 2000);
    CHECK(waitpid(g.pid, NULL, WNOHANG) == 0); /* the gate lives */
    cim_client_free(legit);
    pgate_stop(&g);
}

TEST_MAIN()
