/* End-to-end: msg_gate connection rules (PROTOCOL.md sections 1-2) against a running stack:
 * heartbeat echo, commands before auth, unknown commands, garbage input, the auth deadline
 * (2 s in the test stack) and the idle timeout (3 s; 8 and 10 s under valgrind). */
#include <fcntl.h>

#include "../test.h"
#include "e2e_common.h"
#include "im_codec.h"

/* the stack's settings, exported by tests/run.sh (seconds) */
static int stack_ms(const char *name, int dflt_s)
{
    const char *v = getenv(name);
    int s = v && *v ? atoi(v) : 0;
    return (s > 0 ? s : dflt_s) * 1000;
}
#define AUTH_DEADLINE_MS stack_ms("CIM_TEST_AUTH_TIMEOUT", 2)
#define IDLE_TIMEOUT_MS  stack_ms("CIM_TEST_IDLE_TIMEOUT", 3)

/* Send a heartbeat with seq and expect its echo with that same seq and an empty body. */
static void expect_echo(cim_client_t *c, uint16_t seq)
{
    CHECK_EQ_INT(cim_send(c, IM_CMD_HEARTBEAT, seq, NULL), 0);
    cim_packet_t *p = NULL;
    int rc = cim_next_push(c, IM_CMD_HEARTBEAT, E2E_CALL_MS, &p);
    if (rc != 0)
        fprintf(stderr, "  no echo for seq %u: %s\n", seq, cim_strerror(rc));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(p->seq, seq);
    CHECK_EQ_INT(p->body_len, 0);
    cim_packet_free(p);
}

TEST(heartbeat_echo_before_and_after_login)
{
    cim_client_t *c = e2e_connect("CIM_GATE1");
    expect_echo(c, 777);
    expect_echo(c, 65535);
    expect_echo(c, 1);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    cim_client_free(c);

    c = e2e_new_user("CIM_GATE2", "hb", IM_CT_PC_WINDOWS, NULL, NULL);
    expect_echo(c, 4242);
    expect_echo(c, 2);
    /* several in one write: every echo, in order */
    uint8_t buf[3 * IM_HEADER_LEN];
    for (int i = 0; i < 3; i++)
        im_codec_write_header(buf + i * IM_HEADER_LEN, IM_CMD_HEARTBEAT, (uint16_t) (100 + i), 0);
    CHECK_EQ_INT(cim_send_raw(c, buf, sizeof(buf)), 0);
    for (int i = 0; i < 3; i++) {
        cim_packet_t *p = NULL;
        CHECK_EQ_INT(cim_next_push(c, IM_CMD_HEARTBEAT, E2E_CALL_MS, &p), 0);
        CHECK_EQ_INT(p->seq, 100 + i);
        cim_packet_free(p);
    }
    /* one split over three writes */
    im_codec_write_header(buf, IM_CMD_HEARTBEAT, 3333, 0);
    CHECK_EQ_INT(cim_send_raw(c, buf, 5), 0);
    e2e_sleep_ms(50);
    CHECK_EQ_INT(cim_send_raw(c, buf + 5, 6), 0);
    e2e_sleep_ms(50);
    CHECK_EQ_INT(cim_send_raw(c, buf + 11, 5), 0);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_HEARTBEAT, E2E_CALL_MS, &p), 0);
    CHECK_EQ_INT(p->seq, 3333);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_queued(c), 0);
    cim_client_free(c);
}

TEST(commands_before_auth_refused)
{
    /* 0x0201 has a response with a result field: 0x0202 result_code 3007, then close */
    cim_client_t *c = e2e_connect("CIM_GATE1");
    CIM__Def__CIMRecentContactSessionReq req = CIM__DEF__CIMRECENT_CONTACT_SESSION_REQ__INIT;
    req.user_id = 10001;
    ProtobufCMessage *m = NULL;
    int rc = cim_call(c, IM_CMD_RECENT_SESSION_REQ, &req.base, IM_CMD_RECENT_SESSION_RSP,
                      &cim__def__cimrecent_contact_session_rsp__descriptor, &m, E2E_CALL_MS);
    if (rc != 0)
        fprintf(stderr, "  0x0201 before login: %s\n", cim_strerror(rc));
    CHECK_EQ_INT(rc, 0);
    CIM__Def__CIMRecentContactSessionRsp *rsp = (CIM__Def__CIMRecentContactSessionRsp *) m;
    CHECK_EQ_INT(rsp->result_code, IM_ERR_NOT_LOGGED_IN);
    CHECK_EQ_INT(rsp->n_contact_session_list, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_client_free(c);

    /* 0x0301 before login: closed (whatever it answers first) */
    c = e2e_connect("CIM_GATE2");
    CIM__Def__CIMMsgData md = CIM__DEF__CIMMSG_DATA__INIT;
    md.to_session_id = 10001;
    md.client_msg_id = (char *) "early-1";
    md.session_type = CIM__DEF__CIMSESSION_TYPE__kCIM_SESSION_TYPE_SINGLE;
    md.msg_type = CIM__DEF__CIMMSG_TYPE__kCIM_MSG_TYPE_TEXT;
    md.msg_data.data = (uint8_t *) "hi";
    md.msg_data.len = 2;
    CHECK_EQ_INT(cim_send(c, IM_CMD_MSG_DATA, cim_next_seq(c), &md.base), 0);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_packet_t *p = NULL;
    CHECK(cim_next_push(c, IM_CMD_MSG_DATA, 0, &p) != 0); /* nothing delivered back */
    cim_client_free(c);

    /* 0x0103 logout before login: refused and closed too */
    c = e2e_connect("CIM_GATE1");
    CHECK_EQ_INT(cim_send(c, IM_CMD_LOGOUT_REQ, cim_next_seq(c), NULL), 0);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_client_free(c);

    /* after register (not a login) the rule still holds */
    char name[40];
    e2e_uniq(name, sizeof(name), "early");
    c = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    CHECK_EQ_INT(cim_register(c, name, E2E_PWD, NULL, &code, NULL), 0);
    rc = cim_call(c, IM_CMD_RECENT_SESSION_REQ, &req.base, IM_CMD_RECENT_SESSION_RSP,
                  &cim__def__cimrecent_contact_session_rsp__descriptor, &m, E2E_CALL_MS);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(((CIM__Def__CIMRecentContactSessionRsp *) m)->result_code, IM_ERR_NOT_LOGGED_IN);
    protobuf_c_message_free_unpacked(m, NULL);
    CHECK_EQ_INT(cim_wait_closed(c, 2000), 1);
    cim_client_free(c);
}

TEST(unknown_command_after_auth)
{
    cim_client_t *c = e2e_new_user("CIM_GATE1", "unk", IM_CT_PC_WINDOWS, NULL, NULL);
    CHECK_EQ_INT(cim_send(c, 0x7777, 5, NULL), 0);
    uint8_t junk[] = {0x08, 0x01, 0x12, 0x02, 'h', 'i'};
    uint8_t pkt[IM_HEADER_LEN + sizeof(junk)];
    im_codec_write_header(pkt, 0x7778, 6, sizeof(junk));
    memcpy(pkt + IM_HEADER_LEN, junk, sizeof(junk));
    CHECK_EQ_INT(cim_send_raw(c, pkt, sizeof(pkt)), 0);
    /* a server-to-client command id from a client: also "unknown" */
    CHECK_EQ_INT(cim_send(c, IM_CMD_AUTH_TOKEN_RSP, 7, NULL), 0);
    CHECK_EQ_INT(cim_send(c, IM_CMD_KICKOUT_NOTIFY, 8, NULL), 0);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    e2e_sleep_ms(300);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    CHECK(cim_is_connected(c));
    CHECK_EQ_INT(cim_logged_in(c), 1);
    /* no reply to any of them */
    CHECK_EQ_INT(cim_queued(c), 0);
    cim_client_free(c);
}

/* Open a connection on gate_env, send bytes, expect the gate to close it: at once for bytes
 * that are not packets, by the login deadline at the latest (an auth request whose body does
 * not parse is refused like a wrong password; the connection may retry until the deadline). */
static void expect_closed_after(const char *what, const char *gate_env, const uint8_t *bytes,
                                size_t len)
{
    cim_client_t *g = e2e_connect(gate_env);
    int rc = cim_send_raw(g, bytes, len);
    CHECK(rc == 0 || rc == CIM_ECLOSED);
    int wait_ms = AUTH_DEADLINE_MS + 1000;
    int closed = cim_wait_closed(g, wait_ms);
    if (!closed)
        fprintf(stderr, "  %s: connection still open after %d ms\n", what, wait_ms);
    CHECK_EQ_INT(closed, 1);
    cim_client_free(g);
}

TEST(garbage_connections_closed_others_unaffected)
{
    cim_client_t *legit = e2e_new_user("CIM_GATE1", "legit", IM_CT_PC_WINDOWS, NULL, NULL);
    uint8_t h[IM_HEADER_LEN + 64];

    /* length < 16 */
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 1, 0);
    h[3] = 8;
    expect_closed_after("length 8", "CIM_GATE1", h, IM_HEADER_LEN);
    CHECK_EQ_INT(cim_heartbeat(legit, E2E_CALL_MS), 0);

    /* length 0 */
    memset(h, 0, IM_HEADER_LEN);
    expect_closed_after("length 0", "CIM_GATE1", h, IM_HEADER_LEN);

    /* version 2 */
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 1, 0);
    h[5] = 2;
    expect_closed_after("version 2", "CIM_GATE1", h, IM_HEADER_LEN);
    CHECK_EQ_INT(cim_heartbeat(legit, E2E_CALL_MS), 0);

    /* length above 64 KiB: closed on the header alone, without sending the body */
    im_codec_write_header(h, IM_CMD_AUTH_REQ, 1, 64 * 1024 + 1);
    expect_closed_after("length 64 KiB + 17", "CIM_GATE1", h, IM_HEADER_LEN);
    im_codec_write_header(h, IM_CMD_AUTH_REQ, 1, 0xfffffff0u - IM_HEADER_LEN);
    expect_closed_after("length 4 GiB", "CIM_GATE1", h, IM_HEADER_LEN);
    CHECK_EQ_INT(cim_heartbeat(legit, E2E_CALL_MS), 0);

    /* random bytes (first byte forced high: an impossible length) */
    uint8_t rnd[1024];
    int fd = open("/dev/urandom", O_RDONLY);
    CHECK(fd >= 0);
    CHECK_EQ_INT(read(fd, rnd, sizeof(rnd)), sizeof(rnd));
    close(fd);
    rnd[0] |= 0x80;
    expect_closed_after("random bytes", "CIM_GATE1", rnd, sizeof(rnd));

    /* a body that does not parse as the command's message */
    static const uint8_t bad_body[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    im_codec_write_header(h, IM_CMD_AUTH_REQ, 1, sizeof(bad_body));
    memcpy(h + IM_HEADER_LEN, bad_body, sizeof(bad_body));
    expect_closed_after("unparsable 0x0107 body", "CIM_GATE1", h, IM_HEADER_LEN + sizeof(bad_body));
    CHECK_EQ_INT(cim_heartbeat(legit, E2E_CALL_MS), 0);

    /* garbage from a logged-in connection on the same gate closes only that one */
    cim_client_t *bad = e2e_new_user("CIM_GATE1", "badcl", IM_CT_PC_WINDOWS, NULL, NULL);
    im_codec_write_header(h, IM_CMD_HEARTBEAT, 1, 0);
    h[5] = 9;
    CHECK_EQ_INT(cim_send_raw(bad, h, IM_HEADER_LEN), 0);
    CHECK_EQ_INT(cim_wait_closed(bad, 3000), 1);
    cim_client_free(bad);

    CHECK_EQ_INT(cim_heartbeat(legit, E2E_CALL_MS), 0);
    CHECK(cim_is_connected(legit));
    CHECK_EQ_INT(cim_queued(legit), 0);
    cim_client_free(legit);
}

TEST(login_timeout_silent_client)
{
    cim_client_t *c = e2e_connect("CIM_GATE1");
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(cim_wait_closed(c, AUTH_DEADLINE_MS + 3000), 1);
    int64_t el = e2e_now_ms() - t0;
    fprintf(stderr, "  closed after %d ms\n", (int) el);
    CHECK(el >= AUTH_DEADLINE_MS - 300 && el <= AUTH_DEADLINE_MS + 2000);
    cim_client_free(c);
}

TEST(login_timeout_heartbeats_do_not_count)
{
    cim_client_t *c = e2e_connect("CIM_GATE2");
    int64_t t0 = e2e_now_ms();
    int echoes = 0;
    while (cim_is_connected(c) && e2e_now_ms() - t0 < AUTH_DEADLINE_MS + 3000) {
        if (cim_heartbeat(c, 1000) == 0)
            echoes++;
        cim_wait_closed(c, 300);
    }
    int64_t el = e2e_now_ms() - t0;
    fprintf(stderr, "  closed after %d ms, %d echoes\n", (int) el, echoes);
    CHECK_EQ_INT(cim_is_connected(c), 0);
    CHECK(echoes >= 2); /* heartbeats are answered before login */
    CHECK(el >= AUTH_DEADLINE_MS - 300 && el <= AUTH_DEADLINE_MS + 2000);
    cim_client_free(c);
}

TEST(idle_timeout_closes_silent_client)
{
    cim_client_t *c = e2e_new_user("CIM_GATE1", "idle", IM_CT_PC_WINDOWS, NULL, NULL);
    cim_set_heartbeat_interval(c, 0);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0); /* the last packet: the clock starts here */
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(cim_wait_closed(c, IDLE_TIMEOUT_MS + 3000), 1);
    int64_t el = e2e_now_ms() - t0;
    fprintf(stderr, "  closed after %d ms\n", (int) el);
    CHECK(el >= IDLE_TIMEOUT_MS - 300 && el <= IDLE_TIMEOUT_MS + 2000);
    cim_client_free(c);
}

TEST(idle_timeout_heartbeats_keep_open)
{
    cim_client_t *c = e2e_new_user("CIM_GATE2", "alive", IM_CT_PC_WINDOWS, NULL, NULL);
    cim_set_heartbeat_interval(c, 0);
    int64_t t0 = e2e_now_ms();
    while (e2e_now_ms() - t0 < 5500) {
        CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
        CHECK_EQ_INT(cim_wait_closed(c, 1000), 0);
    }
    CHECK(cim_is_connected(c));
    /* the library's automatic heartbeat does the same */
    cim_set_heartbeat_interval(c, 1000);
    t0 = e2e_now_ms();
    while (e2e_now_ms() - t0 < 4500)
        CHECK(cim_poll(c, 500) >= 0);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    CHECK_EQ_INT(cim_queued(c), 0);
    cim_client_free(c);
}

TEST_MAIN()
