/* libcim self-test: the client library against a scripted fake server in a child process
 * (no msg_gate involved). Covers framing (split and coalesced packets, big packets, bad
 * frames), matching by (cmd, seq), the push queue and callback, timeouts, closes, automatic
 * heartbeats, login state and reconnect, gate lists and the source address. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "../test.h"
#include "e2e_common.h"
#include "im_codec.h"

/* ------------------------------------------------------------------ fake server (child) */

typedef int (*script_fn)(int fd, int idx); /* returns the child's exit status contribution */

#define FS_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  fake server FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            _exit(100);                                                                            \
        }                                                                                          \
    } while (0)

static int fs_read(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            return -1;
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t) r;
    }
    return 0;
}

static void fs_write(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        FS_CHECK(w > 0);
        p += w;
        n -= (size_t) w;
    }
}

/* Read one packet: body length, or -1 on EOF/timeout. */
static long fs_read_pkt(int fd, im_header_t *h, uint8_t *body, size_t cap)
{
    uint8_t hdr[IM_HEADER_LEN];
    if (fs_read(fd, hdr, sizeof(hdr)) != 0)
        return -1;
    im_codec_read_header(hdr, h);
    FS_CHECK(h->version == 1 && h->length >= IM_HEADER_LEN && h->length - IM_HEADER_LEN <= cap);
    size_t blen = h->length - IM_HEADER_LEN;
    if (blen && fs_read(fd, body, blen) != 0)
        return -1;
    return (long) blen;
}

/* Build a packet into out (>= 16 + packed size); its length. */
static size_t fs_pkt(uint8_t *out, uint16_t cmd, uint16_t seq, const ProtobufCMessage *msg)
{
    size_t blen = msg ? protobuf_c_message_pack(msg, out + IM_HEADER_LEN) : 0;
    im_codec_write_header(out, cmd, seq, blen);
    return IM_HEADER_LEN + blen;
}

static void fs_send(int fd, uint16_t cmd, uint16_t seq, const ProtobufCMessage *msg)
{
    uint8_t buf[4096];
    fs_write(fd, buf, fs_pkt(buf, cmd, seq, msg));
}

/* Listen on 127.0.0.1:0, fork a child that accepts nconns connections one after the other
 * and runs script on each; the child's exit status is the sum of the scripts' returns. */
static pid_t fake_start(script_fn script, int nconns, int *port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(ls >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(ls, (struct sockaddr *) &sa, sizeof(sa)) == 0);
    CHECK(listen(ls, 8) == 0);
    socklen_t sl = sizeof(sa);
    CHECK(getsockname(ls, (struct sockaddr *) &sa, &sl) == 0);
    *port = ntohs(sa.sin_port);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        int total = 0;
        for (int i = 0; i < nconns; i++) {
            int fd = accept(ls, NULL, NULL);
            FS_CHECK(fd >= 0);
            total += script(fd, i);
            close(fd);
        }
        _exit(total > 99 ? 99 : total);
    }
    close(ls);
    return pid;
}

/* The child's exit status (100: one of its FS_CHECKs failed). */
static int fake_wait(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) != 100);
    return WEXITSTATUS(st);
}

static cim_client_t *client_to(int port)
{
    cim_client_t *c = cim_client_new();
    cim_set_auto_sync(c, 0); /* the fake server scripts no 0x0207 */
    CHECK(c != NULL);
    CHECK_EQ_INT(cim_connect(c, "127.0.0.1", port, 2000), 0);
    CHECK(cim_is_connected(c));
    return c;
}

/* ------------------------------------------------------------------ scripts */

static int script_echo(int fd, int idx)
{
    (void) idx;
    static uint8_t body[70000];
    im_header_t h;
    long n;
    int count = 0;
    while ((n = fs_read_pkt(fd, &h, body, sizeof(body))) >= 0) {
        uint8_t hdr[IM_HEADER_LEN];
        im_codec_write_header(hdr, h.cmd, h.seq, (size_t) n);
        fs_write(fd, hdr, sizeof(hdr));
        fs_write(fd, body, (size_t) n);
        count++;
    }
    return count;
}

/* push 0x0301 + kickout + the register answer in one write, split at byte 7 of the answer,
 * the rest of the answer one byte at a time */
static int script_sticky_split(int fd, int idx)
{
    (void) idx;
    uint8_t body[4096];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) >= 0);
    FS_CHECK(h.cmd == IM_CMD_REGISTER_REQ);
    CIM__Def__CIMRegisterReq *req =
        cim__def__cimregister_req__unpack(NULL, h.length - IM_HEADER_LEN, body);
    FS_CHECK(req && !strcmp(req->user_name, "bob") && !strcmp(req->user_pwd, "pw123456"));
    cim__def__cimregister_req__free_unpacked(req, NULL);

    uint8_t out[8192];
    size_t len = 0;
    CIM__Def__CIMMsgData md = CIM__DEF__CIMMSG_DATA__INIT;
    md.from_user_id = 5;
    md.client_msg_id = (char *) "m1";
    len += fs_pkt(out + len, IM_CMD_MSG_DATA, 1, &md.base);
    CIM__Def__CIMKickoutNotify k = CIM__DEF__CIMKICKOUT_NOTIFY__INIT;
    k.user_id = 42;
    k.reason = 1;
    k.client_type = CIM__DEF__CIMCLIENT_TYPE__kCIM_CLIENT_TYPE_PC_WINDOWS;
    len += fs_pkt(out + len, IM_CMD_KICKOUT_NOTIFY, 2, &k.base);
    CIM__Def__CIMUserInfo ui = CIM__DEF__CIMUSER_INFO__INIT;
    ui.user_id = 42;
    CIM__Def__CIMRegisterRsp rsp = CIM__DEF__CIMREGISTER_RSP__INIT;
    rsp.result_code = CIM__DEF__CIMERROR_CODE__kCIM_ERR_SUCCSSE;
    rsp.user_info = &ui;
    size_t rsp_at = len;
    len += fs_pkt(out + len, IM_CMD_REGISTER_RSP, h.seq, &rsp.base);
    fs_write(fd, out, rsp_at + 7);
    for (size_t i = rsp_at + 7; i < len; i++) {
        usleep(2000);
        fs_write(fd, out + i, 1);
    }
    return fs_read_pkt(fd, &h, body, sizeof(body)) < 0 ? 0 : 1; /* client closes */
}

/* answers a heartbeat with: 0x0105 seq+1, 0x0104 same seq, then 0x0105 same seq */
static int script_seq_match(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) == 0 && h.cmd == IM_CMD_HEARTBEAT);
    fs_send(fd, IM_CMD_HEARTBEAT, (uint16_t) (h.seq + 1), NULL);
    fs_send(fd, IM_CMD_LOGOUT_RSP, h.seq, NULL);
    usleep(20000);
    fs_send(fd, IM_CMD_HEARTBEAT, h.seq, NULL);
    return fs_read_pkt(fd, &h, body, sizeof(body)) < 0 ? 0 : 1;
}

static int script_push_then_close(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) == 0);
    CIM__Def__CIMMsgData md = CIM__DEF__CIMMSG_DATA__INIT;
    md.seq = 9;
    fs_send(fd, IM_CMD_MSG_DATA, 3, &md.base);
    usleep(50000);
    return 0; /* closes */
}

static int script_bad_frames(int fd, int idx)
{
    uint8_t hdr[IM_HEADER_LEN];
    im_codec_write_header(hdr, IM_CMD_HEARTBEAT, 1, 0);
    if (idx == 0)
        hdr[5] = 2; /* version 2 */
    else if (idx == 1)
        hdr[3] = 8; /* length 8 */
    else            /* length 9 MiB, more than libcim accepts */
        im_codec_write_header(hdr, IM_CMD_SYNC_RSP, 1, 9 * 1024 * 1024);
    fs_write(fd, hdr, sizeof(hdr));
    uint8_t b;
    fs_read(fd, &b, 1); /* until the client closes */
    return 0;
}

static int script_silent(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) == 0);
    usleep(800000);
    return 0;
}

#define BIG_LEN (2 * 1024 * 1024 + 3)

static int script_big(int fd, int idx)
{
    (void) idx;
    uint8_t *p = malloc(IM_HEADER_LEN + BIG_LEN);
    FS_CHECK(p != NULL);
    im_codec_write_header(p, IM_CMD_SYNC_RSP, 7, BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        p[IM_HEADER_LEN + i] = (uint8_t) (i * 31 + 7);
    fs_write(fd, p, IM_HEADER_LEN + BIG_LEN);
    free(p);
    uint8_t b;
    fs_read(fd, &b, 1);
    return 0;
}

static int script_login_then_token(int fd, int idx)
{
    uint8_t body[4096];
    im_header_t h;
    long n = fs_read_pkt(fd, &h, body, sizeof(body));
    FS_CHECK(n >= 0);
    if (idx == 0) {
        FS_CHECK(h.cmd == IM_CMD_AUTH_REQ);
        CIM__Def__CIMAuthReq *req = cim__def__cimauth_req__unpack(NULL, (size_t) n, body);
        FS_CHECK(req && !strcmp(req->user_name, "alice") && req->client_type == 1);
        int good = !strcmp(req->user_pwd, "right-pw");
        cim__def__cimauth_req__free_unpacked(req, NULL);
        CIM__Def__CIMUserInfo ui = CIM__DEF__CIMUSER_INFO__INIT;
        ui.user_id = 77;
        CIM__Def__CIMAuthRsp rsp = CIM__DEF__CIMAUTH_RSP__INIT;
        rsp.result_code = good ? 200 : 2003;
        if (good) {
            rsp.user_info = &ui;
            rsp.user_token = (char *) "tok77";
        }
        fs_send(fd, IM_CMD_AUTH_RSP, h.seq, &rsp.base);
        if (!good) { /* the client tries again on this connection */
            n = fs_read_pkt(fd, &h, body, sizeof(body));
            FS_CHECK(n >= 0 && h.cmd == IM_CMD_AUTH_REQ);
            rsp.result_code = 200;
            rsp.user_info = &ui;
            rsp.user_token = (char *) "tok77";
            fs_send(fd, IM_CMD_AUTH_RSP, h.seq, &rsp.base);
        }
        usleep(50000);
        return 0; /* close: the client reconnects */
    }
    FS_CHECK(h.cmd == IM_CMD_AUTH_TOKEN_REQ);
    CIM__Def__CIMAuthTokenReq *req = cim__def__cimauth_token_req__unpack(NULL, (size_t) n, body);
    FS_CHECK(req && req->user_id == 77 && !strcmp(req->user_token, "tok77") &&
             req->client_type == 1);
    cim__def__cimauth_token_req__free_unpacked(req, NULL);
    CIM__Def__CIMAuthTokenRsp rsp = CIM__DEF__CIMAUTH_TOKEN_RSP__INIT;
    rsp.result_code = 200;
    fs_send(fd, IM_CMD_AUTH_TOKEN_RSP, h.seq, &rsp.base);
    return script_echo(fd, idx) > 0 ? 0 : 1;
}

static int script_logout(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    long n = fs_read_pkt(fd, &h, body, sizeof(body));
    FS_CHECK(n >= 0 && h.cmd == IM_CMD_AUTH_TOKEN_REQ);
    CIM__Def__CIMAuthTokenRsp rsp = CIM__DEF__CIMAUTH_TOKEN_RSP__INIT;
    rsp.result_code = 200;
    fs_send(fd, IM_CMD_AUTH_TOKEN_RSP, h.seq, &rsp.base);
    n = fs_read_pkt(fd, &h, body, sizeof(body));
    FS_CHECK(n >= 0 && h.cmd == IM_CMD_LOGOUT_REQ);
    CIM__Def__CIMLogoutReq *req = cim__def__cimlogout_req__unpack(NULL, (size_t) n, body);
    FS_CHECK(req && req->user_id == 55 && req->client_type == 3);
    cim__def__cimlogout_req__free_unpacked(req, NULL);
    CIM__Def__CIMLogoutRsp lr = CIM__DEF__CIMLOGOUT_RSP__INIT;
    lr.result_code = 200;
    fs_send(fd, IM_CMD_LOGOUT_RSP, h.seq, &lr.base);
    return 0;
}

static int script_garbage_body(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) >= 0);
    uint8_t out[IM_HEADER_LEN + 3];
    im_codec_write_header(out, IM_CMD_REGISTER_RSP, h.seq, 3);
    memcpy(out + IM_HEADER_LEN, "\xff\xff\xff", 3);
    fs_write(fd, out, sizeof(out));
    uint8_t b;
    fs_read(fd, &b, 1);
    return 0;
}

static int script_three_pushes(int fd, int idx)
{
    (void) idx;
    uint8_t body[256];
    im_header_t h;
    FS_CHECK(fs_read_pkt(fd, &h, body, sizeof(body)) == 0);
    for (int i = 0; i < 3; i++)
        fs_send(fd, IM_CMD_PRESENCE_NOTIFY, (uint16_t) (100 + i), NULL);
    fs_send(fd, IM_CMD_HEARTBEAT, h.seq, NULL);
    uint8_t b;
    fs_read(fd, &b, 1);
    return 0;
}

static int script_peer_addr(int fd, int idx)
{
    (void) idx;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    FS_CHECK(getpeername(fd, (struct sockaddr *) &sa, &sl) == 0);
    return sa.sin_addr.s_addr == inet_addr("127.0.0.2") ? 0 : 1;
}

/* ------------------------------------------------------------------ cases */

TEST(selftest_heartbeat_echo)
{
    int port;
    pid_t pid = fake_start(script_echo, 1, &port);
    cim_client_t *c = client_to(port);
    CHECK_EQ_INT(cim_heartbeat(c, 2000), 0);
    CHECK_EQ_INT(cim_send(c, IM_CMD_HEARTBEAT, 4242, NULL), 0);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_HEARTBEAT, 2000, &p), 0);
    CHECK_EQ_INT(p->seq, 4242);
    CHECK_EQ_INT(p->body_len, 0);
    cim_packet_free(p);
    /* a body bigger than the stack buffer goes through the heap path */
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    CIM__Def__CIMAuthReq req = CIM__DEF__CIMAUTH_REQ__INIT;
    req.user_name = big;
    ProtobufCMessage *m = NULL;
    CHECK_EQ_INT(cim_call(c, IM_CMD_AUTH_REQ, &req.base, IM_CMD_AUTH_REQ,
                          &cim__def__cimauth_req__descriptor, &m, 2000),
                 0);
    CHECK_EQ_INT(strlen(((CIM__Def__CIMAuthReq *) m)->user_name), sizeof(big) - 1);
    protobuf_c_message_free_unpacked(m, NULL);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 3);
}

TEST(selftest_sticky_and_split_packets)
{
    int port;
    pid_t pid = fake_start(script_sticky_split, 1, &port);
    cim_client_t *c = client_to(port);
    uint32_t code = 0;
    uint64_t uid = 0;
    CHECK_EQ_INT(cim_register(c, "bob", "pw123456", "Bob", &code, &uid), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(uid, 42);
    CHECK_EQ_INT(cim_queued(c), 2);
    CHECK_EQ_INT(cim_was_kicked(c), 1);
    CHECK_EQ_INT(cim_kick_reason(c), 1);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_KICKOUT_NOTIFY, 0, &p), 0);
    CHECK_EQ_INT(p->seq, 2);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_next_push(c, 0, 0, &p), 0);
    CHECK_EQ_INT(p->cmd, IM_CMD_MSG_DATA);
    CIM__Def__CIMMsgData *md =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(p, &cim__def__cimmsg_data__descriptor);
    CHECK(md != NULL);
    CHECK_EQ_STR(md->client_msg_id, "m1");
    protobuf_c_message_free_unpacked(&md->base, NULL);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_queued(c), 0);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_match_by_cmd_and_seq)
{
    int port;
    pid_t pid = fake_start(script_seq_match, 1, &port);
    cim_client_t *c = client_to(port);
    uint16_t next = cim_next_seq(c);
    CHECK_EQ_INT(cim_heartbeat(c, 2000), 0);
    CHECK_EQ_INT(cim_queued(c), 2);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, 0, 0, &p), 0);
    CHECK_EQ_INT(p->cmd, IM_CMD_HEARTBEAT);
    CHECK_EQ_INT(p->seq, (uint16_t) (next + 2));
    cim_packet_free(p);
    CHECK_EQ_INT(cim_next_push(c, 0, 0, &p), 0);
    CHECK_EQ_INT(p->cmd, IM_CMD_LOGOUT_RSP);
    CHECK_EQ_INT(p->seq, (uint16_t) (next + 1));
    cim_packet_free(p);
    CHECK_EQ_INT(cim_next_push(c, 0, 100, &p), CIM_ETIMEDOUT);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_peer_close_keeps_queue)
{
    int port;
    pid_t pid = fake_start(script_push_then_close, 1, &port);
    cim_client_t *c = client_to(port);
    CHECK_EQ_INT(cim_heartbeat(c, 2000), CIM_ECLOSED);
    CHECK_EQ_INT(cim_is_connected(c), 0);
    CHECK_EQ_INT(cim_wait_closed(c, 0), 1);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_MSG_DATA, 0, &p), 0);
    CHECK_EQ_INT(p->seq, 3);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_next_push(c, 0, 500, &p), CIM_ECLOSED);
    CHECK_EQ_INT(cim_poll(c, 0), CIM_ENOTCONN);
    CHECK_EQ_INT(cim_heartbeat(c, 100), CIM_ENOTCONN);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_wait_closed)
{
    int port;
    pid_t pid = fake_start(script_silent, 1, &port);
    cim_client_t *c = client_to(port);
    CHECK_EQ_INT(cim_send(c, IM_CMD_HEARTBEAT, 1, NULL), 0);
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(cim_wait_closed(c, 200), 0);
    CHECK(e2e_now_ms() - t0 >= 150);
    CHECK_EQ_INT(cim_wait_closed(c, 3000), 1);
    CHECK(e2e_now_ms() - t0 < 2500);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_bad_frames_close)
{
    int port;
    pid_t pid = fake_start(script_bad_frames, 3, &port);
    for (int i = 0; i < 3; i++) {
        cim_client_t *c = client_to(port);
        int rc = 0;
        int64_t until = e2e_now_ms() + 2000;
        while (rc >= 0 && e2e_now_ms() < until)
            rc = cim_poll(c, 200);
        CHECK_EQ_INT(rc, CIM_EPROTO);
        CHECK_EQ_INT(cim_is_connected(c), 0);
        CHECK_EQ_INT(cim_queued(c), 0);
        cim_client_free(c);
    }
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_call_timeout)
{
    int port;
    pid_t pid = fake_start(script_silent, 1, &port);
    cim_client_t *c = client_to(port);
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(cim_heartbeat(c, 300), CIM_ETIMEDOUT);
    int64_t el = e2e_now_ms() - t0;
    CHECK(el >= 280 && el < 700);
    CHECK(cim_is_connected(c));
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_big_packet)
{
    int port;
    pid_t pid = fake_start(script_big, 1, &port);
    cim_client_t *c = client_to(port);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_SYNC_RSP, 5000, &p), 0);
    CHECK_EQ_INT(p->body_len, BIG_LEN);
    CHECK_EQ_INT(p->seq, 7);
    int bad = 0;
    for (size_t i = 0; i < BIG_LEN; i++)
        bad += p->body[i] != (uint8_t) (i * 31 + 7);
    CHECK_EQ_INT(bad, 0);
    cim_packet_free(p);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_auto_heartbeat)
{
    int port;
    pid_t pid = fake_start(script_echo, 1, &port);
    cim_client_t *c = client_to(port);
    cim_set_heartbeat_interval(c, 100);
    int64_t until = e2e_now_ms() + 550;
    while (e2e_now_ms() < until)
        CHECK(cim_poll(c, 50) >= 0);
    CHECK_EQ_INT(cim_queued(c), 0); /* the echoes were swallowed */
    /* an explicit heartbeat still gets its echo */
    CHECK_EQ_INT(cim_heartbeat(c, 1000), 0);
    cim_set_heartbeat_interval(c, 0);
    until = e2e_now_ms() + 300;
    while (e2e_now_ms() < until)
        CHECK(cim_poll(c, 50) >= 0);
    cim_client_free(c);
    int n = fake_wait(pid); /* packets echoed: about 5 automatic + 1 */
    if (n < 4 || n > 8)
        fprintf(stderr, "  echoed %d\n", n);
    CHECK(n >= 4 && n <= 8);
}

TEST(selftest_login_and_reconnect)
{
    int port;
    pid_t pid = fake_start(script_login_then_token, 2, &port);
    cim_client_t *c = cim_client_new();
    cim_set_auto_sync(c, 0); /* the fake server scripts no 0x0207 */
    CHECK_EQ_INT(cim_reconnect(c, 1000), CIM_ENOTOKEN);
    CHECK_EQ_INT(cim_is_connected(c), 0);
    CHECK_EQ_INT(cim_connect(c, "127.0.0.1", port, 2000), 0);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_login_password(c, "alice", "wrong-pw", 1, &code), CIM_ERESULT);
    CHECK_EQ_INT(code, 2003);
    CHECK_EQ_INT(cim_logged_in(c), 0);
    CHECK_EQ_INT(cim_login_password(c, "alice", "right-pw", 1, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_user_id(c), 77);
    CHECK_EQ_STR(cim_token(c), "tok77");
    CHECK_EQ_STR(cim_user_name(c), "alice");
    CHECK_EQ_INT(cim_logged_in(c), 1);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    CHECK_EQ_INT(cim_logged_in(c), 1);
    CHECK_EQ_INT(cim_reconnect(c, 2000), 0);
    CHECK_EQ_INT(cim_logged_in(c), 1);
    CHECK_EQ_INT(cim_heartbeat(c, 1000), 0);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_logout)
{
    int port;
    pid_t pid = fake_start(script_logout, 1, &port);
    cim_client_t *c = client_to(port);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_login_token(c, 55, "t55", 3, &code), 0);
    CHECK_EQ_INT(cim_user_id(c), 55);
    CHECK_EQ_STR(cim_token(c), "t55");
    CHECK_EQ_INT(cim_logout(c, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_logged_in(c), 0);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_unparsable_body)
{
    int port;
    pid_t pid = fake_start(script_garbage_body, 1, &port);
    cim_client_t *c = client_to(port);
    uint32_t code = 1;
    CHECK_EQ_INT(cim_register(c, "bob", "pw123456", NULL, &code, NULL), CIM_EPROTO);
    CHECK_EQ_INT(code, 0);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

static int pushes_seen;
static void count_push(cim_client_t *c, const cim_packet_t *p, void *ud)
{
    (void) c;
    CHECK(ud == &pushes_seen);
    CHECK_EQ_INT(p->cmd, IM_CMD_PRESENCE_NOTIFY);
    CHECK_EQ_INT(p->seq, 100 + pushes_seen);
    pushes_seen++;
}

TEST(selftest_push_callback)
{
    int port;
    pid_t pid = fake_start(script_three_pushes, 1, &port);
    cim_client_t *c = client_to(port);
    cim_set_push_cb(c, count_push, &pushes_seen);
    CHECK_EQ_INT(cim_heartbeat(c, 2000), 0);
    CHECK_EQ_INT(pushes_seen, 3);
    CHECK_EQ_INT(cim_queued(c), 0);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST(selftest_gate_list)
{
    cim_client_t *c = cim_client_new();
    cim_set_auto_sync(c, 0); /* the fake server scripts no 0x0207 */
    CHECK_EQ_STR(cim_gate(c), "127.0.0.1:8000");
    CHECK_EQ_INT(cim_set_gates(c, "127.0.0.1:1, localhost:2"), 0);
    CHECK_EQ_INT(cim_set_gates(c, "[::1]:8010"), 0);
    CHECK_EQ_STR(cim_gate(c), "::1:8010");
    CHECK_EQ_INT(cim_set_gates(c, "gatehost"), 0);
    CHECK_EQ_STR(cim_gate(c), "gatehost:8000");
    CHECK_EQ_INT(cim_set_gates(c, "a:b"), CIM_EINVAL);
    CHECK_EQ_INT(cim_set_gates(c, "a:70000"), CIM_EINVAL);
    CHECK_EQ_INT(cim_set_gates(c, ":80"), CIM_EINVAL);
    CHECK_EQ_INT(cim_set_gates(c, "a:1,,b:2"), CIM_EINVAL);
    CHECK_EQ_INT(cim_set_gates(c, ""), CIM_EINVAL);
    CHECK_EQ_STR(cim_gate(c), "gatehost:8000");
    CHECK_EQ_INT(cim_connect(c, "no.such.host.invalid", 80, 1000), CIM_EINVAL);
    CHECK_EQ_INT(cim_set_source_ip(c, "not-an-ip"), CIM_EINVAL);

    /* a port nobody listens on, then the fake: connect_addr takes the second */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(s, (struct sockaddr *) &sa, sizeof(sa)) == 0);
    socklen_t sl = sizeof(sa);
    CHECK(getsockname(s, (struct sockaddr *) &sa, &sl) == 0);
    int dead = ntohs(sa.sin_port);
    CHECK_EQ_INT(cim_connect(c, "127.0.0.1", dead, 1000), -ECONNREFUSED);
    int port;
    pid_t pid = fake_start(script_echo, 1, &port);
    char list[64], want[32];
    snprintf(list, sizeof(list), "127.0.0.1:%d,127.0.0.1:%d", dead, port);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    CHECK_EQ_INT(cim_connect_addr(c, list, 2000), 0);
    CHECK_EQ_STR(cim_gate(c), want);
    CHECK_EQ_INT(cim_heartbeat(c, 1000), 0);
    close(s);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 1);
}

TEST(selftest_seq_wraps)
{
    cim_client_t *c = cim_client_new();
    cim_set_auto_sync(c, 0); /* the fake server scripts no 0x0207 */
    CHECK_EQ_INT(cim_next_seq(c), 1);
    for (int i = 2; i <= 65535; i++)
        CHECK_EQ_INT(cim_next_seq(c), i);
    CHECK_EQ_INT(cim_next_seq(c), 1);
    CHECK_EQ_INT(cim_send(c, 1, 1, NULL), CIM_ENOTCONN);
    CHECK_EQ_INT(cim_wait_closed(c, 0), 1);
    cim_client_free(c);
    cim_client_free(NULL);
    CHECK(strcmp(cim_strerror(CIM_ETIMEDOUT), "timed out") == 0);
    CHECK(strcmp(cim_result_name(2003), "LOGIN_INVALID_USER_OR_PWD") == 0);
    CHECK(strcmp(cim_cmd_name(0x010B), "CIMKickoutNotify") == 0);
}

TEST(selftest_source_ip)
{
    int port;
    pid_t pid = fake_start(script_peer_addr, 1, &port);
    cim_client_t *c = cim_client_new();
    cim_set_auto_sync(c, 0); /* the fake server scripts no 0x0207 */
    CHECK_EQ_INT(cim_set_source_ip(c, "127.0.0.2"), 0);
    CHECK_EQ_INT(cim_connect(c, "127.0.0.1", port, 2000), 0);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_client_free(c);
    CHECK_EQ_INT(fake_wait(pid), 0);
}

TEST_MAIN()
