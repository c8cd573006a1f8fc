/* End-to-end: 1:1 messaging (issue 3) through the real stack: send/ack/delivery across gates,
 * echo to the sender's other devices, pipelined bursts, resends (also through the other
 * logic), offline sync and paging, history, sessions and unread, read receipts, latest and
 * by-id, recall, data placement in the shards, identity checks, and Redis / MariaDB outages. */
#include "../test.h"
#include "e2e_common.h"
#include "e2e_msg_common.h"
#include "im_id.h"

#define ST CIM_SESSION_SINGLE

TEST(msg_cross_gate_and_own_devices)
{
    uint64_t a, b;
    char an[40];
    cim_client_t *ca = msg_user("CIM_GATE1", "ma", IM_CT_PC_WINDOWS, &a, an);
    cim_client_t *cb = msg_user("CIM_GATE2", "mb", IM_CT_PC_WINDOWS, &b, NULL);
    cim_client_t *ca2 = msg_device("CIM_GATE2", an, IM_CT_ANDROID); /* A's phone */

    cim_ack_t ack;
    uint64_t id = msg_send_ok(ca, b, "hello from a", &ack);
    CHECK(ack.seq > 0);
    CHECK_EQ_INT(ack.to_session_id, b);
    CHECK_EQ_INT(ack.session_type, ST);
    CHECK_EQ_INT(cim_unacked(ca), 0);

    CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->from_user_id, a);
    CHECK_EQ_INT(d->to_session_id, b);
    CHECK_EQ_INT(d->server_msg_id, id);
    CHECK_EQ_INT(d->session_type, ST);
    CHECK_EQ_INT(d->msg_type, CIM_MSG_TEXT);
    CHECK(msg_body_is(d, "hello from a"));
    CHECK_EQ_STR(d->client_msg_id, ack.client_msg_id);
    CHECK_EQ_INT(d->seq, 1); /* B's first inbox entry */
    CHECK_EQ_STR(d->from_nick_name, an);
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    /* the sender's other device sees what it sent, with the seq of A's inbox */
    d = msg_next(ca2, 3000);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->server_msg_id, id);
    CHECK_EQ_INT(d->from_user_id, a);
    CHECK_EQ_INT(d->to_session_id, b);
    CHECK_EQ_INT(d->seq, ack.seq);
    CHECK(msg_body_is(d, "hello from a"));
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    /* ... and the sending connection does not */
    CHECK_EQ_INT(msg_count_for(ca, 700), 0);

    /* the reply goes the other way; A's two devices both get it */
    uint64_t id2 = msg_send_ok(cb, a, "hi back", NULL);
    CHECK(id2 > id);
    for (int i = 0; i < 2; i++) {
        d = msg_next(i ? ca2 : ca, 3000);
        CHECK(d != NULL);
        CHECK_EQ_INT(d->server_msg_id, id2);
        CHECK_EQ_INT(d->from_user_id, b);
        CHECK_EQ_INT(d->seq, ack.seq + 1);
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    cim_client_free(ca);
    cim_client_free(ca2);
    cim_client_free(cb);
}

typedef struct acks_s {
    int n, ok, bad;
    uint64_t ids[256];
    char cmids[256][CIM_CMID_MAX + 1];
} acks_t;

static void collect_ack(cim_client_t *c, const cim_ack_t *a, void *ud)
{
    acks_t *k = ud;
    (void) c;
    if (a->res_code != CIM_RES_OK) {
        fprintf(stderr, "  ack %s: res %u\n", a->client_msg_id, a->res_code);
        k->bad++;
        return;
    }
    for (int i = 0; i < k->n; i++)
        if (!strcmp(k->cmids[i], a->client_msg_id)) {
            k->ids[i] = a->server_msg_id;
            k->ok++;
        }
}

TEST(msg_burst_200_in_order)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "burstA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "burstB", IM_CT_PC_WINDOWS, &b, NULL);
    static acks_t k;
    k.n = 200;
    cim_set_ack_cb(ca, collect_ack, &k);
    for (int i = 0; i < 200; i++) {
        char text[32];
        snprintf(text, sizeof(text), "burst %03d", i);
        cim_msg_out_t m = {.to = b, .data = text, .len = strlen(text)};
        CHECK_EQ_INT(cim_send_msg_async(ca, &m, k.cmids[i]), 0);
    }
    CHECK(cim_in_flight(ca) > 0);
    int rc = cim_flush(ca, 20000);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(k.bad, 0);
    CHECK_EQ_INT(k.ok, 200);
    CHECK_EQ_INT(cim_unacked(ca), 0);

    uint64_t prev_id = 0, first_seq = 0;
    for (int i = 0; i < 200; i++) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 5000);
        if (!d)
            fprintf(stderr, "  message %d did not arrive\n", i);
        CHECK(d != NULL);
        char text[32];
        snprintf(text, sizeof(text), "burst %03d", i);
        if (!msg_body_is(d, text)) {
            fprintf(stderr, "  message %d: got \"%.*s\" seq %" PRIu64 " id %" PRIu64 "\n", i,
                    (int) d->msg_data.len, (const char *) d->msg_data.data, d->seq,
                    d->server_msg_id);
            for (int j = i + 1; j < 200; j++) {
                CIM__Def__CIMMsgData *e = msg_next(cb, 1000);
                if (!e)
                    break;
                fprintf(stderr, "  then \"%.*s\" seq %" PRIu64 " id %" PRIu64 "\n",
                        (int) e->msg_data.len, (const char *) e->msg_data.data, e->seq,
                        e->server_msg_id);
                cim__def__cimmsg_data__free_unpacked(e, NULL);
            }
            for (int j = 0; j < 200; j++)
                fprintf(stderr, "  ack %d: id %" PRIu64 "\n", j, k.ids[j]);
        }
        CHECK(msg_body_is(d, text));
        CHECK_EQ_INT(d->server_msg_id, k.ids[i]);
        CHECK(d->server_msg_id > prev_id);
        if (i == 0)
            first_seq = d->seq;
        CHECK_EQ_INT(d->seq, first_seq + (uint64_t) i);
        prev_id = d->server_msg_id;
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(first_seq, 1);
    CHECK_EQ_INT(msg_count_for(cb, 300), 0);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST(msg_resend_same_id_also_via_other_logic)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "rsA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "rsB", IM_CT_PC_WINDOWS, &b, NULL);
    cim_msg_out_t m = {.to = b, .data = "once", .len = 4, .client_msg_id = "resend-test-1"};
    cim_ack_t a1, a2, a3;
    CHECK_EQ_INT(cim_send_msg(ca, &m, &a1), 0);
    CHECK_EQ_INT(a1.res_code, CIM_RES_OK);
    CHECK_EQ_STR(a1.client_msg_id, "resend-test-1");
    CHECK_EQ_INT(cim_send_msg(ca, &m, &a2), 0);
    CHECK_EQ_INT(a2.server_msg_id, a1.server_msg_id);
    CHECK_EQ_INT(a2.seq, a1.seq);
    CHECK_EQ_INT(msg_count_for(cb, 1200), 1);

    /* the same resend through the other logic: stop logic1, everything goes to logic2 */
    cim_client_t *cs[2] = {ca, cb};
    CHECK_EQ_INT(msg_ctl("stop", "logic1", cs, 2), 0);
    int one = msg_wait_logics(1, 20000, cs, 2);
    if (!one)
        msg_ctl("start", "logic1", NULL, 0);
    CHECK(one);
    /* the connections may have been routed to logic1: come back fresh */
    CHECK_EQ_INT(cim_reconnect(ca, E2E_CONNECT_MS), 0);
    CHECK_EQ_INT(cim_reconnect(cb, E2E_CONNECT_MS), 0);
    int rc = cim_send_msg(ca, &m, &a3);
    int ok_id = rc == 0 && a3.server_msg_id == a1.server_msg_id;
    if (!ok_id)
        fprintf(stderr, "  resend via logic2: %s res %u id %" PRIu64 " (first %" PRIu64 ")\n",
                cim_strerror(rc), a3.res_code, a3.server_msg_id, a1.server_msg_id);
    int extra = msg_count_for(cb, 1200);
    size_t nsync = 99;
    uint64_t maxseq = 0;
    int src = cim_sync(cb, 0, 0, NULL, NULL, &maxseq, &nsync, NULL);

    /* restore the stack before judging */
    CHECK_EQ_INT(msg_ctl("start", "logic1", cs, 2), 0);
    CHECK(msg_wait_logics(2, 20000, cs, 2));
    CHECK(ok_id);
    CHECK_EQ_INT(extra, 0);
    CHECK_EQ_INT(src, 0);
    CHECK_EQ_INT(nsync, 1); /* B's inbox holds the message once */
    CHECK_EQ_INT(maxseq, 1);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST(msg_offline_sync_and_paging)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "offA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "offB", IM_CT_PC_WINDOWS, &b, NULL);
    msg_send_ok(ca, b, "before", NULL);
    CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
    CHECK(d != NULL);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    uint64_t s0 = cim_seq(cb);
    CHECK_EQ_INT(s0, 1);
    cim_close(cb); /* B goes offline */
    e2e_sleep_ms(300);

    uint64_t ids[20];
    for (int i = 0; i < 20; i++) {
        char text[16];
        snprintf(text, sizeof(text), "off %02d", i);
        ids[i] = msg_send_ok(ca, b, text, NULL);
    }
    /* B comes back: the library syncs from its seq and hands over exactly those 20. The last
     * ones may still be on their way into B's inbox (the ack means stored on A's shard) and
     * then arrive as pushes, possibly ahead of the sync page: order by seq before checking. */
    CHECK_EQ_INT(cim_reconnect(cb, E2E_CONNECT_MS), 0);
    CIM__Def__CIMMsgData *got[20] = {0};
    for (int n = 0; n < 20; n++) {
        d = msg_next(cb, 5000);
        CHECK(d != NULL);
        uint64_t k = d->seq - s0 - 1;
        CHECK(d->seq > s0 && k < 20);
        CHECK(got[k] == NULL); /* exactly once */
        got[k] = d;
    }
    for (int i = 0; i < 20; i++) {
        d = got[i];
        char text[16];
        snprintf(text, sizeof(text), "off %02d", i);
        CHECK(msg_body_is(d, text));
        CHECK_EQ_INT(d->server_msg_id, ids[i]);
        CHECK_EQ_INT(d->seq, s0 + 1 + (uint64_t) i);
        CHECK_EQ_INT(d->from_user_id, a);
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(msg_count_for(cb, 500), 0);
    CHECK_EQ_INT(cim_seq(cb), s0 + 20);

    /* explicit sync from the last seq: 20 in order, has_more false at the end */
    size_t count = 0;
    uint64_t maxseq = 0;
    CHECK_EQ_INT(cim_sync(cb, s0, 0, NULL, NULL, &maxseq, &count, NULL), 0);
    CHECK_EQ_INT(count, 20);
    CHECK_EQ_INT(maxseq, s0 + 20);

    /* paging with limit 7: 7, 7, 6 */
    uint64_t after = s0;
    const size_t want[3] = {7, 7, 6};
    int k = 0;
    for (int page = 0; page < 3; page++) {
        CIM__Def__CIMSyncRsp *rsp = NULL;
        uint32_t code = 0;
        CHECK_EQ_INT(cim_sync_page(cb, after, 7, &rsp, &code), 0);
        CHECK_EQ_INT(rsp->n_msg_list, want[page]);
        CHECK_EQ_INT(rsp->has_more, page < 2);
        CHECK_EQ_INT(rsp->max_seq, s0 + 20);
        for (size_t i = 0; i < rsp->n_msg_list; i++, k++) {
            const CIM__Def__CIMMsgInfo *mi = rsp->msg_list[i];
            CHECK_EQ_INT(mi->seq, s0 + 1 + (uint64_t) k);
            CHECK_EQ_INT(mi->server_msg_id, ids[k]);
            CHECK_EQ_INT(mi->from_user_id, a);
            CHECK_EQ_INT(mi->to_session_id, b); /* as in the delivery push */
            after = mi->seq;
        }
        cim__def__cimsync_rsp__free_unpacked(rsp, NULL);
    }
    CHECK_EQ_INT(k, 20);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST(msg_history_pages)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "hiA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "hiB", IM_CT_PC_WINDOWS, &b, NULL);
    uint64_t ids[25];
    for (int i = 0; i < 25; i++) {
        char text[16];
        snprintf(text, sizeof(text), "h%02d", i);
        ids[i] = msg_send_ok(ca, b, text, NULL);
        CHECK(i == 0 || ids[i] > ids[i - 1]);
    }
    /* the ack means stored on A's shard; B's inbox rows follow (fan-out): wait for B's copies */
    int got = 0;
    for (int i = 0; i < 25; i++) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 10000);
        if (!d)
            break;
        got++;
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(got, 25);
    for (int who = 0; who < 2; who++) { /* B's view, then A's */
        cim_client_t *c = who ? ca : cb;
        uint64_t peer = who ? b : a;
        uint64_t cursor = 0;
        const size_t want[4] = {10, 10, 5, 0};
        int k = 24; /* newest first */
        for (int page = 0; page < 4; page++) {
            CIM__Def__CIMGetMsgListRsp *rsp = NULL;
            CHECK_EQ_INT(cim_history(c, ST, peer, cursor, 10, &rsp, NULL), 0);
            CHECK_EQ_INT(rsp->n_msg_list, want[page]);
            for (size_t i = 0; i < rsp->n_msg_list; i++, k--) {
                const CIM__Def__CIMMsgInfo *mi = rsp->msg_list[i];
                char text[16];
                snprintf(text, sizeof(text), "h%02d", k);
                CHECK_EQ_INT(mi->server_msg_id, ids[k]);
                CHECK_EQ_INT(mi->from_user_id, a);
                CHECK(mi->msg_data.len == 3 && !memcmp(mi->msg_data.data, text, 3));
            }
            if (rsp->n_msg_list)
                CHECK_EQ_INT(rsp->end_msg_id, rsp->msg_list[rsp->n_msg_list - 1]->server_msg_id);
            else
                CHECK_EQ_INT(rsp->end_msg_id, 0);
            cursor = rsp->end_msg_id;
            cim__def__cimget_msg_list_rsp__free_unpacked(rsp, NULL);
        }
        CHECK_EQ_INT(k, -1); /* the union is all 25, no overlap, no gap */
    }
    cim_client_free(ca);
    cim_client_free(cb);
}

static const CIM__Def__CIMContactSessionInfo *
find_session(const CIM__Def__CIMRecentContactSessionRsp *rsp, uint64_t sid)
{
    for (size_t i = 0; i < rsp->n_contact_session_list; i++)
        if (rsp->contact_session_list[i]->session_id == sid)
            return rsp->contact_session_list[i];
    return NULL;
}

TEST(msg_unread_and_read_receipts)
{
    uint64_t a, b;
    char bn[40];
    cim_client_t *ca = msg_user("CIM_GATE1", "rdA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "rdB", IM_CT_PC_WINDOWS, &b, bn);
    cim_client_t *cb2 = msg_device("CIM_GATE1", bn, IM_CT_IOS);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++)
        last = msg_send_ok(ca, b, "unread me", NULL);
    /* the ack means stored on the sender's shard; the recipient's inbox row and unread
     * count follow (DESIGN Guarantees 1): the push says they are there */
    CHECK(msg_wait_push(cb, last, 5000));

    CIM__Def__CIMRecentContactSessionRsp *rsp = NULL;
    CHECK_EQ_INT(cim_sessions(cb, 0, &rsp, NULL), 0);
    const CIM__Def__CIMContactSessionInfo *s = find_session(rsp, a);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->session_type, ST);
    CHECK_EQ_INT(s->unread_cnt, 5);
    CHECK_EQ_INT(s->server_msg_id, last);
    CHECK_EQ_INT(s->msg_from_user_id, a);
    CHECK_EQ_INT(rsp->unread_counts, 5);
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);

    /* A's own view of the session: nothing unread */
    CHECK_EQ_INT(cim_sessions(ca, 0, &rsp, NULL), 0);
    s = find_session(rsp, b);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->unread_cnt, 0);
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);

    CHECK_EQ_INT(cim_read_ack(cb, ST, a, last), 0);
    CIM__Def__CIMMsgDataReadNotify *n = (CIM__Def__CIMMsgDataReadNotify *) msg_next_cmd(
        ca, IM_CMD_MSG_READ_NOTIFY, &cim__def__cimmsg_data_read_notify__descriptor, 3000);
    CHECK(n != NULL);
    CHECK_EQ_INT(n->user_id, b);
    CHECK_EQ_INT(n->session_id, b);
    CHECK_EQ_INT(n->msg_id, last);
    CHECK_EQ_INT(n->session_type, ST);
    cim__def__cimmsg_data_read_notify__free_unpacked(n, NULL);
    n = (CIM__Def__CIMMsgDataReadNotify *) msg_next_cmd(
        cb2, IM_CMD_MSG_READ_NOTIFY, &cim__def__cimmsg_data_read_notify__descriptor, 3000);
    CHECK(n != NULL);
    CHECK_EQ_INT(n->user_id, b);
    CHECK_EQ_INT(n->session_id, a);
    CHECK_EQ_INT(n->msg_id, last);
    cim__def__cimmsg_data_read_notify__free_unpacked(n, NULL);
    /* the reading connection gets no notify of its own */
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(cb, IM_CMD_MSG_READ_NOTIFY, 500, &p), CIM_ETIMEDOUT);

    CHECK_EQ_INT(cim_sessions(cb, 0, &rsp, NULL), 0);
    s = find_session(rsp, a);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->unread_cnt, 0);
    CHECK_EQ_INT(rsp->unread_counts, 0);
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);

    /* a new message counts again */
    uint64_t more = msg_send_ok(ca, b, "one more", NULL);
    CHECK(msg_wait_push(cb2, more, 5000));
    CHECK_EQ_INT(cim_sessions(cb2, 0, &rsp, NULL), 0);
    s = find_session(rsp, a);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->unread_cnt, 1);
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);
    cim_client_free(ca);
    cim_client_free(cb);
    cim_client_free(cb2);
}

TEST(msg_latest_and_by_id)
{
    uint64_t a, b, c3;
    cim_client_t *ca = msg_user("CIM_GATE1", "ltA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "ltB", IM_CT_PC_WINDOWS, &b, NULL);
    cim_client_t *cc = msg_user("CIM_GATE1", "ltC", IM_CT_PC_WINDOWS, &c3, NULL);
    uint64_t latest = 99;
    CHECK_EQ_INT(cim_latest_msg_id(cb, ST, a, &latest, NULL), 0);
    CHECK_EQ_INT(latest, 0); /* empty session */

    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = msg_send_ok(ca, b, i == 1 ? "second" : "x", NULL);
    uint64_t other = msg_send_ok(ca, c3, "for c", NULL); /* another session */
    CHECK(msg_wait_push(cb, ids[2], 5000));
    CHECK(msg_wait_push(cc, other, 5000));
    CHECK_EQ_INT(cim_latest_msg_id(cb, ST, a, &latest, NULL), 0);
    CHECK_EQ_INT(latest, ids[2]);
    CHECK_EQ_INT(cim_latest_msg_id(ca, ST, b, &latest, NULL), 0);
    CHECK_EQ_INT(latest, ids[2]);
    CHECK_EQ_INT(cim_latest_msg_id(ca, ST, c3, &latest, NULL), 0);
    CHECK_EQ_INT(latest, other);

    uint64_t q[4] = {ids[0], ids[1], other, ids[2]};
    CIM__Def__CIMGetMsgByIdRsp *rsp = NULL;
    CHECK_EQ_INT(cim_msgs_by_id(cb, ST, a, q, 4, &rsp, NULL), 0);
    CHECK_EQ_INT(rsp->n_msg_list, 3); /* the id of another session is left out */
    int seen = 0;
    for (size_t i = 0; i < rsp->n_msg_list; i++) {
        const CIM__Def__CIMMsgInfo *mi = rsp->msg_list[i];
        CHECK(mi->server_msg_id != other);
        for (int j = 0; j < 3; j++)
            if (mi->server_msg_id == ids[j])
                seen |= 1 << j;
        if (mi->server_msg_id == ids[1])
            CHECK(mi->msg_data.len == 6 && !memcmp(mi->msg_data.data, "second", 6));
        CHECK_EQ_INT(mi->from_user_id, a);
    }
    CHECK_EQ_INT(seen, 7);
    cim__def__cimget_msg_by_id_rsp__free_unpacked(rsp, NULL);

    /* A's side of the same session, and A asking for C's message in B's session */
    CHECK_EQ_INT(cim_msgs_by_id(ca, ST, b, q, 4, &rsp, NULL), 0);
    CHECK_EQ_INT(rsp->n_msg_list, 3);
    cim__def__cimget_msg_by_id_rsp__free_unpacked(rsp, NULL);
    /* C cannot read A-B messages through its own session with A */
    CHECK_EQ_INT(cim_msgs_by_id(cc, ST, a, q, 4, &rsp, NULL), 0);
    CHECK_EQ_INT(rsp->n_msg_list, 1);
    CHECK_EQ_INT(rsp->msg_list[0]->server_msg_id, other);
    cim__def__cimget_msg_by_id_rsp__free_unpacked(rsp, NULL);

    /* more than 20 ids: INVALID_PARAMETER */
    uint64_t many[21];
    for (int i = 0; i < 21; i++)
        many[i] = ids[0];
    uint32_t code = 0;
    CHECK_EQ_INT(cim_msgs_by_id(cb, ST, a, many, 21, &rsp, &code), CIM_ERESULT);
    CHECK_EQ_INT(code, 3001);
    CHECK_EQ_INT(rsp->n_msg_list, 0);
    cim__def__cimget_msg_by_id_rsp__free_unpacked(rsp, NULL);
    CHECK_EQ_INT(cim_msgs_by_id(cb, ST, a, many, 20, &rsp, &code), 0);
    CHECK(rsp->n_msg_list >= 1);
    cim__def__cimget_msg_by_id_rsp__free_unpacked(rsp, NULL);
    cim_client_free(ca);
    cim_client_free(cb);
    cim_client_free(cc);
}

typedef struct found_s {
    uint64_t id;
    int status, data_len, recall_note;
} found_t;

static void find_in_sync(cim_client_t *c, const CIM__Def__CIMMsgInfo *mi, void *ud)
{
    found_t *f = ud;
    char want[64];
    (void) c;
    snprintf(want, sizeof(want), "\"server_msg_id\":\"%" PRIu64 "\"", f->id);
    if (mi->server_msg_id == f->id) {
        f->status = (int) mi->msg_status;
        f->data_len = (int) mi->msg_data.len;
    } else if (mi->msg_type == 9 && mi->msg_data.len < 512) {
        char buf[512];
        memcpy(buf, mi->msg_data.data, mi->msg_data.len);
        buf[mi->msg_data.len] = '\0';
        if (strstr(buf, "\"type\":\"recall\"") && strstr(buf, want))
            f->recall_note++;
    }
}

TEST(msg_recall)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "rcA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "rcB", IM_CT_PC_WINDOWS, &b, NULL);
    uint64_t id = msg_send_ok(ca, b, "oops, wrong chat", NULL);
    CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
    CHECK(d != NULL);
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    uint32_t code = 0;
    CHECK_EQ_INT(cim_recall(ca, ST, b, id, &code), 0);
    CHECK_EQ_INT(code, 200);
    CIM__Def__CIMMsgRecallNotify *n = (CIM__Def__CIMMsgRecallNotify *) msg_next_cmd(
        cb, IM_CMD_RECALL_NOTIFY, &cim__def__cimmsg_recall_notify__descriptor, 3000);
    CHECK(n != NULL);
    CHECK_EQ_INT(n->from_user_id, a);
    CHECK_EQ_INT(n->session_id, a);
    CHECK_EQ_INT(n->server_msg_id, id);
    CHECK_EQ_INT(n->session_type, ST);
    cim__def__cimmsg_recall_notify__free_unpacked(n, NULL);
    /* the NOTIFICATION entry is pushed too, as an inbox entry of the session */
    d = msg_next(cb, 3000);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->msg_type, 9);
    CHECK_EQ_INT(d->from_user_id, a);
    CHECK(d->seq > 0);
    cim__def__cimmsg_data__free_unpacked(d, NULL);

    /* sync (B's inbox from the start) shows the recalled message and the notification */
    found_t f = {.id = id, .status = -1, .data_len = -1};
    CHECK_EQ_INT(cim_sync(cb, 0, 0, find_in_sync, &f, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(f.status, 11);
    CHECK_EQ_INT(f.data_len, 0);
    CHECK_EQ_INT(f.recall_note, 1);
    /* history too */
    CIM__Def__CIMGetMsgListRsp *h = NULL;
    CHECK_EQ_INT(cim_history(cb, ST, a, 0, 20, &h, NULL), 0);
    int hist_found = 0;
    for (size_t i = 0; i < h->n_msg_list; i++) {
        if (h->msg_list[i]->server_msg_id != id)
            continue;
        hist_found = 1;
        CHECK_EQ_INT(h->msg_list[i]->msg_status, 11);
        CHECK_EQ_INT(h->msg_list[i]->msg_data.len, 0);
    }
    CHECK(hist_found);
    cim__def__cimget_msg_list_rsp__free_unpacked(h, NULL);
    /* the sender's view agrees */
    found_t fa = {.id = id, .status = -1, .data_len = -1};
    CHECK_EQ_INT(cim_sync(ca, 0, 0, find_in_sync, &fa, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(fa.status, 11);
    CHECK_EQ_INT(fa.data_len, 0);

    /* recalling someone else's message: NOT_FOUND */
    uint64_t id2 = msg_send_ok(ca, b, "mine", NULL);
    CHECK_EQ_INT(cim_recall(cb, ST, a, id2, &code), CIM_ERESULT);
    CHECK_EQ_INT(code, 3003);
    /* a second recall of the same message is answered the same */
    CHECK_EQ_INT(cim_recall(ca, ST, b, id, &code), 0);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST(msg_rows_in_the_right_shards)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "shA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "shB", IM_CT_PC_WINDOWS, &b, NULL);
    /* make A and B live on different shards when possible: pick another B if needed */
    int tries = 0;
    while (msg_shard(a) == msg_shard(b) && tries++ < 8) {
        cim_client_free(cb);
        cb = msg_user("CIM_GATE2", "shB", IM_CT_PC_WINDOWS, &b, NULL);
    }
    cim_ack_t ack;
    uint64_t id = msg_send_ok(ca, b, "where am I", &ack);
    CIM__Def__CIMMsgData *d = msg_next(cb, 3000); /* fan-out done */
    CHECK(d != NULL);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    char sql[512];
    for (unsigned s = 0; s < 4; s++) {
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM im_%u.im_message_send WHERE server_msg_id = %" PRIu64, s,
                 id);
        long long n = msg_sql_num(sql);
        if (n != (s == msg_shard(a)))
            fprintf(stderr, "  shard %u: %lld outbox rows (A on %u)\n", s, n, msg_shard(a));
        CHECK_EQ_INT(n, s == msg_shard(a));
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM im_%u.im_message_recv WHERE server_msg_id = %" PRIu64, s,
                 id);
        n = msg_sql_num(sql);
        if (n != (s == msg_shard(b)))
            fprintf(stderr, "  shard %u: %lld inbox rows (B on %u)\n", s, n, msg_shard(b));
        CHECK_EQ_INT(n, s == msg_shard(b));
    }
    snprintf(sql, sizeof(sql),
             "SELECT CONCAT(from_id, ' ', client_msg_id, ' ', to_id, ' ', session_type) FROM "
             "im_%u.im_message_send WHERE server_msg_id = %" PRIu64,
             msg_shard(a), id);
    char out[256], want[256];
    CHECK_EQ_INT(msg_sql(sql, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%" PRIu64 " %s %" PRIu64 " 1\n", a, ack.client_msg_id, b);
    CHECK_EQ_STR(out, want);
    snprintf(sql, sizeof(sql),
             "SELECT CONCAT(user_id, ' ', from_id, ' ', session_id) FROM im_%u.im_message_recv "
             "WHERE server_msg_id = %" PRIu64,
             msg_shard(b), id);
    CHECK_EQ_INT(msg_sql(sql, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", b, a, a);
    CHECK_EQ_STR(out, want);
    /* the delivery confirmation (sent by libcim) marks B's inbox row delivered */
    snprintf(sql, sizeof(sql),
             "SELECT status FROM im_%u.im_message_recv WHERE server_msg_id = %" PRIu64,
             msg_shard(b), id);
    long long st = -1;
    for (int i = 0; i < 30 && st != 1; i++) {
        cim_poll(cb, 100);
        st = msg_sql_num(sql);
    }
    CHECK_EQ_INT(st, 1);

    /* every shard's outbox is unique on (from_id, client_msg_id) */
    for (unsigned s = 0; s < 4; s++) {
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM (SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY "
                 "SEQ_IN_INDEX) AS cols FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
                 "'im_%u' AND TABLE_NAME = 'im_message_send' AND NON_UNIQUE = 0 GROUP BY "
                 "INDEX_NAME) x WHERE cols = 'from_id,client_msg_id'",
                 s);
        CHECK_EQ_INT(msg_sql_num(sql), 1);
    }
    cim_client_free(ca);
    cim_client_free(cb);
}

/* A recipient whose user row went away after the logic learned it exists (an operator deleted
 * it in MariaDB): the message is stored, its fan-out skips the missing inbox, and the seq
 * counter update leaves no stray im_user row behind. The author's own counter still counts. */
TEST(msg_recipient_row_deleted_leaves_no_row)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "delA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "delB", IM_CT_PC_WINDOWS, &b, NULL);
    msg_send_ok(ca, b, "first", NULL); /* A's logic now knows B exists */
    CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
    CHECK(d != NULL);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    cim_close(cb);
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM im_%u.im_user WHERE user_id = %" PRIu64, msg_shard(b),
             b);
    char out[64];
    CHECK_EQ_INT(msg_sql(sql, out, sizeof(out)), 0);
    snprintf(sql, sizeof(sql), "SELECT max_seq FROM im_%u.im_user WHERE user_id = %" PRIu64,
             msg_shard(a), a);
    long long seq_a = msg_sql_num(sql);
    CHECK_EQ_INT(seq_a, 1);
    cim_ack_t ack;
    CHECK_EQ_INT(cim_send_text(ca, b, "second", &ack), 0);
    CHECK_EQ_INT(ack.res_code, CIM_RES_OK);
    CHECK_EQ_INT(ack.seq, 2); /* in A's own inbox */
    /* the fan-out ran (the outbox row is marked done) and made no inbox row and no user row */
    snprintf(sql, sizeof(sql),
             "SELECT fanout FROM im_%u.im_message_send WHERE server_msg_id = %" PRIu64,
             msg_shard(a), ack.server_msg_id);
    long long done = 0;
    for (int i = 0; i < 50 && done != 1; i++) {
        e2e_sleep_ms(100);
        done = msg_sql_num(sql);
    }
    CHECK_EQ_INT(done, 1);
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM im_%u.im_user WHERE user_id = %" PRIu64,
             msg_shard(b), b);
    CHECK_EQ_INT(msg_sql_num(sql), 0);
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM im_%u.im_message_recv WHERE server_msg_id = %" PRIu64,
             msg_shard(b), ack.server_msg_id);
    CHECK_EQ_INT(msg_sql_num(sql), 0);
    snprintf(sql, sizeof(sql), "SELECT max_seq FROM im_%u.im_user WHERE user_id = %" PRIu64,
             msg_shard(a), a);
    CHECK_EQ_INT(msg_sql_num(sql), 2);
    cim_client_free(ca);
    cim_client_free(cb);
}

/* A backlog of interrupted fan-outs (outbox rows never marked done, as a crash under load
 * leaves them), more than one sweeper page: both logics' sweepers page through it and every
 * message lands in the recipient's inbox exactly once, with gap-free seqs, and is marked done. */
TEST(msg_sweeper_pages_a_backlog)
{
    const int n = msg_light() ? 300 : 600; /* sweeper pages hold 200 */
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "swA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "swB", IM_CT_PC_WINDOWS, &b, NULL);
    cim_close(cb); /* offline: the rows are all it gets */
    /* server_msg_ids of a minute ago */
    uint64_t base = im_id_floor(im_now_ms() - 60000);
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO im_%u.im_message_send (from_id, server_msg_id, client_msg_id, to_id, "
             "session_type, msg_type, from_seq, client_type, status, fanout, created, msg_data) "
             "SELECT %" PRIu64 ", %" PRIu64 " + seq, CONCAT('sweep-', seq), %" PRIu64
             ", 1, 1, 0, 0, 0, 0, UNIX_TIMESTAMP(), CONCAT('swept ', seq) FROM im_0.seq_1_to_%d",
             msg_shard(a), a, base, b, n);
    char out[256];
    CHECK_EQ_INT(msg_sql(sql, out, sizeof(out)), 0);

    char pending[256], inbox[512];
    snprintf(pending, sizeof(pending),
             "SELECT COUNT(*) FROM im_%u.im_message_send WHERE from_id = %" PRIu64
             " AND fanout = 0",
             msg_shard(a), a);
    snprintf(inbox, sizeof(inbox),
             "SELECT COUNT(*) FROM im_%u.im_message_recv WHERE user_id = %" PRIu64
             " AND server_msg_id > %" PRIu64 " AND server_msg_id <= %" PRIu64,
             msg_shard(b), b, base, base + (uint64_t) n);
    long long left = -1, rows = -1;
    for (int64_t end = e2e_now_ms() + 60000; e2e_now_ms() < end;) {
        left = msg_sql_num(pending);
        rows = msg_sql_num(inbox);
        if (left == 0 && rows == n)
            break;
        e2e_sleep_ms(500);
    }
    if (left != 0 || rows != n)
        fprintf(stderr, "  %lld still pending, %lld of %d inbox rows\n", left, rows, n);
    CHECK_EQ_INT(left, 0);
    CHECK_EQ_INT(rows, n);
    /* exactly once, gap-free: B's whole inbox is seq 1..n and its counter says n */
    snprintf(sql, sizeof(sql),
             "SELECT CONCAT(COUNT(*), ' ', COUNT(DISTINCT server_msg_id), ' ', MIN(seq), ' ', "
             "MAX(seq), ' ', (SELECT max_seq FROM im_%u.im_user WHERE user_id = %" PRIu64
             ")) FROM im_%u.im_message_recv WHERE user_id = %" PRIu64,
             msg_shard(b), b, msg_shard(b), b);
    CHECK_EQ_INT(msg_sql(sql, out, sizeof(out)), 0);
    char want[64];
    snprintf(want, sizeof(want), "%d %d 1 %d %d\n", n, n, n, n);
    CHECK_EQ_STR(out, want);
    /* and B gets them by sync */
    CHECK_EQ_INT(cim_reconnect(cb, E2E_CONNECT_MS), 0);
    size_t count = 0;
    uint64_t maxseq = 0;
    CHECK_EQ_INT(cim_sync(cb, 0, 0, NULL, NULL, &maxseq, &count, NULL), 0);
    CHECK_EQ_INT(count, (size_t) n);
    CHECK_EQ_INT(maxseq, (uint64_t) n);
    cim_client_free(ca);
    cim_client_free(cb);
}

static uint32_t send_res(cim_client_t *c, const cim_msg_out_t *m)
{
    cim_ack_t ack;
    int rc = cim_send_msg(c, m, &ack);
    if (rc != 0 && rc != CIM_ERESULT)
        fprintf(stderr, "  send: %s\n", cim_strerror(rc));
    return ack.res_code;
}

TEST(msg_identity_and_limits)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "idA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "idB", IM_CT_PC_WINDOWS, &b, NULL);
    cim_msg_out_t m = {.to = b, .data = "x", .len = 1};

    m.from_user_id = b; /* pretending to be B */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    m.from_user_id = a; /* its own id is fine */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_OK);
    m.from_user_id = 0;

    m.to = (1ULL << 52) + 4242; /* nobody */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    m.to = a; /* oneself */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    m.to = b;

    m.client_msg_id = "";
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    char id65[66], id64[65];
    memset(id65, 'k', 65);
    id65[65] = '\0';
    memset(id64, 'q', 64);
    id64[64] = '\0';
    m.client_msg_id = id65;
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    m.client_msg_id = id64;
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_OK);
    m.client_msg_id = NULL;

    static char big[16 * 1024 + 1];
    memset(big, 'z', sizeof(big));
    m.data = big;
    m.len = sizeof(big);
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);
    m.len = 16 * 1024; /* the limit itself is fine */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_OK);
    m.data = "x";
    m.len = 1;

    m.session_type = CIM_SESSION_GROUP;
    m.to = (1ULL << 52) + 777; /* no such group */
    CHECK_EQ_INT(send_res(ca, &m), CIM_RES_REFUSED);

    /* refused messages are final: nothing is left to resend */
    CHECK_EQ_INT(cim_unacked(ca), 0);
    /* B got exactly the three accepted ones */
    CHECK_EQ_INT(msg_count_for(cb, 1000), 3);
    cim_client_free(ca);
    cim_client_free(cb);
}

static int redis_flushall(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %s FLUSHALL >/dev/null 2>&1",
             e2e_env("CIM_REDIS_PORT"));
    int st = system(cmd);
    return st == -1 ? -1 : WEXITSTATUS(st);
}

TEST(msg_redis_flushed)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "rfA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "rfB", IM_CT_PC_WINDOWS, &b, NULL);
    uint64_t ids[10];
    int got[10] = {0};
    uint64_t seqs[10] = {0};
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof(t), "r%d", i);
        ids[i] = msg_send_ok(ca, b, t, NULL);
    }
    for (int i = 0; i < 5; i++) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
        CHECK(d != NULL);
        CHECK_EQ_INT(d->server_msg_id, ids[i]);
        got[i]++;
        seqs[i] = d->seq;
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(redis_flushall(), 0);
    for (int i = 0; i < 10; i++) { /* keep the connections alive while things settle */
        cim_poll(ca, 0);
        cim_poll(cb, 100);
    }
    for (int i = 5; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof(t), "r%d", i);
        cim_ack_t ack;
        int rc = cim_send_text(ca, b, t, &ack);
        if (rc != 0) { /* a failing dependency may answer ERROR: the resend must work */
            fprintf(stderr, "  send after FLUSHALL: %s res %u\n", cim_strerror(rc), ack.res_code);
            CHECK_EQ_INT(cim_flush(ca, 10000), 0); /* resent with the same client_msg_id */
            CIM__Def__CIMMsgDataAck *ak = (CIM__Def__CIMMsgDataAck *) msg_next_cmd(
                ca, IM_CMD_MSG_DATA_ACK, &cim__def__cimmsg_data_ack__descriptor, 5000);
            CHECK(ak != NULL);
            CHECK_EQ_INT(ak->res_code, 1);
            ack.server_msg_id = ak->server_msg_id;
            cim__def__cimmsg_data_ack__free_unpacked(ak, NULL);
        }
        ids[i] = ack.server_msg_id;
    }
    /* whatever reached B live, plus what the sync after a reconnect brings */
    for (;;) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 800);
        if (!d)
            break;
        for (int i = 0; i < 10; i++)
            if (d->server_msg_id == ids[i]) {
                got[i]++;
                seqs[i] = d->seq;
            }
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(cim_reconnect(cb, E2E_CONNECT_MS), 0);
    for (;;) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 300);
        if (!d)
            break;
        for (int i = 0; i < 10; i++)
            if (d->server_msg_id == ids[i]) {
                got[i]++;
                seqs[i] = d->seq;
            }
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    for (int i = 0; i < 10; i++) {
        if (got[i] != 1)
            fprintf(stderr, "  message %d arrived %d times\n", i, got[i]);
        CHECK_EQ_INT(got[i], 1);
        CHECK_EQ_INT(seqs[i], (uint64_t) i + 1);
    }
    /* unread counts are rebuilt from MySQL */
    CIM__Def__CIMRecentContactSessionRsp *rsp = NULL;
    CHECK_EQ_INT(cim_sessions(cb, 0, &rsp, NULL), 0);
    const CIM__Def__CIMContactSessionInfo *s = find_session(rsp, a);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->unread_cnt, 10);
    cim__def__cimrecent_contact_session_rsp__free_unpacked(rsp, NULL);
    /* and live delivery works again (B's route is back) */
    uint64_t id = msg_send_ok(ca, b, "after", NULL);
    CIM__Def__CIMMsgData *d = msg_next(cb, 3000);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->server_msg_id, id);
    CHECK_EQ_INT(d->seq, 11);
    cim__def__cimmsg_data__free_unpacked(d, NULL);
    cim_client_free(ca);
    cim_client_free(cb);
}

/* Redis frozen (SIGSTOP, as a hung server or a silent network partition looks): the logics give
 * up on the stuck connection after their Redis timeout (5 s) and reconnect. A SIGTERM must
 * still end a logic promptly (the stuck connection once kept the loop alive forever with
 * every pending command), and nothing acked is lost once Redis is back. */
static pid_t g_frozen_redis;

static void thaw_redis(void)
{
    if (g_frozen_redis > 0)
        kill(g_frozen_redis, SIGCONT);
    g_frozen_redis = 0;
}

static void fz_entry(cim_client_t *c, const CIM__Def__CIMMsgInfo *m, void *ud)
{
    (void) c;
    int *seen = ud;
    char text[8] = {0}; /* the body is not NUL-terminated */
    int k;
    if (m->msg_data.len == 5)
        memcpy(text, m->msg_data.data, 5);
    if (text[0] && sscanf(text, "fz %2d", &k) == 1 && k >= 0 && k < 10)
        seen[k]++;
    else
        seen[10]++;
}

TEST(msg_redis_frozen_then_sigterm)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "fzA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "fzB", IM_CT_PC_WINDOWS, &b, NULL);
    cim_client_t *cs[2] = {ca, cb};
    pid_t rp = e2e_stack_pid("redis"), lp = e2e_stack_pid("logic1");
    CHECK(e2e_pid_alive(rp));
    CHECK(e2e_pid_alive(lp));
    atexit(thaw_redis);
    g_frozen_redis = rp;
    CHECK_EQ_INT(kill(rp, SIGSTOP), 0);
    for (int i = 0; i < 10; i++) {
        char text[16], cmid[16];
        snprintf(text, sizeof(text), "fz %02d", i);
        snprintf(cmid, sizeof(cmid), "fz-%d", i);
        cim_msg_out_t m = {.to = b, .data = text, .len = 5, .client_msg_id = cmid};
        CHECK_EQ_INT(cim_send_msg_async(ca, &m, NULL), 0);
    }
    /* past the logics' Redis timeout, clients kept alive by their heartbeats */
    for (int64_t t = e2e_now_ms(); e2e_now_ms() - t < 7000;) {
        cim_poll(ca, 0);
        cim_poll(cb, 100);
    }
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(kill(lp, SIGTERM), 0);
    while (e2e_pid_alive(lp) && e2e_now_ms() - t0 < 20000) {
        cim_poll(ca, 0);
        cim_poll(cb, 50);
    }
    int ms = (int) (e2e_now_ms() - t0), gone = !e2e_pid_alive(lp);
    if (!gone)
        kill(lp, SIGKILL);
    thaw_redis();
    fprintf(stderr, "  logic1 %s %d ms after SIGTERM with Redis frozen\n",
            gone ? "exited" : "still running (killed)", ms);
    CHECK_EQ_INT(msg_ctl("start", "logic1", cs, 2), 0);
    CHECK(msg_wait_logics(2, 20000, cs, 2));
    CHECK(gone);
    CHECK(ms <= E2E_SIGTERM_MAX_MS);

    /* every message acked (resent with its client_msg_id as needed), in B's inbox once */
    int rc = cim_flush(ca, 30000);
    if (rc != 0) { /* the connection may have gone with the logic: the login resends */
        CHECK_EQ_INT(cim_reconnect(ca, E2E_CONNECT_MS), 0);
        CHECK_EQ_INT(cim_flush(ca, 30000), 0);
    }
    int seen[11] = {0};
    uint64_t max = 0;
    CHECK_EQ_INT(cim_sync(cb, 0, 100, fz_entry, seen, &max, NULL, NULL), 0);
    for (int i = 0; i < 10; i++) {
        if (seen[i] != 1)
            fprintf(stderr, "  fz %02d is in the inbox %d times\n", i, seen[i]);
        CHECK_EQ_INT(seen[i], 1);
    }
    CHECK_EQ_INT(seen[10], 0);
    CHECK_EQ_INT(max, 10);
    /* and live delivery works again */
    uint64_t id = msg_send_ok(ca, b, "thawed", NULL);
    int live = 0;
    for (CIM__Def__CIMMsgData *d; (d = msg_next(cb, 5000));) {
        live += d->server_msg_id == id;
        cim__def__cimmsg_data__free_unpacked(d, NULL);
        if (live)
            break;
    }
    CHECK_EQ_INT(live, 1);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST(msg_mysql_down_then_resend)
{
    uint64_t a, b;
    cim_client_t *ca = msg_user("CIM_GATE1", "dbA", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = msg_user("CIM_GATE2", "dbB", IM_CT_PC_WINDOWS, &b, NULL);
    msg_send_ok(ca, b, "warm up", NULL);
    CHECK_EQ_INT(msg_count_for(cb, 500), 1);

    cim_client_t *cs[2] = {ca, cb};
    CHECK_EQ_INT(msg_ctl("stop", "mysql", cs, 2), 0);
    cim_set_call_timeout(ca, 8000);
    cim_msg_out_t m = {.to = b, .data = "while down", .len = 10, .client_msg_id = "down-1"};
    cim_ack_t ack;
    int64_t t0 = e2e_now_ms();
    int rc = cim_send_msg(ca, &m, &ack);
    int64_t took = e2e_now_ms() - t0;
    size_t unacked = cim_unacked(ca);
    int start_rc = msg_ctl("start", "mysql", cs, 2);
    fprintf(stderr, "  send with MariaDB down: %s, res %u after %lld ms\n", cim_strerror(rc),
            ack.res_code, (long long) took);
    CHECK_EQ_INT(start_rc, 0);
    CHECK_EQ_INT(rc, CIM_ERESULT);
    CHECK_EQ_INT(ack.res_code, CIM_RES_ERROR);
    CHECK(took < 6000);
    CHECK_EQ_INT(unacked, 1); /* kept for the resend */

    /* the same client_msg_id again once MariaDB is back */
    if (!cim_is_connected(ca))
        CHECK_EQ_INT(cim_reconnect(ca, E2E_CONNECT_MS), 0);
    if (!cim_is_connected(cb))
        CHECK_EQ_INT(cim_reconnect(cb, E2E_CONNECT_MS), 0);
    rc = cim_flush(ca, 20000);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cim_unacked(ca), 0);
    CHECK_EQ_INT(cim_send_msg(ca, &m, &ack), 0); /* answered with the stored id */
    CHECK(ack.server_msg_id > 0);
    int n = 0;
    for (;;) {
        CIM__Def__CIMMsgData *d = msg_next(cb, 1500);
        if (!d)
            break;
        if (d->server_msg_id == ack.server_msg_id) {
            n++;
            CHECK_EQ_STR(d->client_msg_id, "down-1");
        }
        cim__def__cimmsg_data__free_unpacked(d, NULL);
    }
    CHECK_EQ_INT(n, 1);
    /* B's inbox holds it once; reads work again (a pooled connection that went stale with
     * the restart may fail one request: tolerated for 5 s, and reported) */
    size_t count = 0;
    uint32_t code = 0;
    int fails = 0;
    int64_t until = e2e_now_ms() + 5000;
    while ((rc = cim_sync(cb, 0, 0, NULL, NULL, NULL, &count, &code)) != 0 &&
           e2e_now_ms() < until) {
        fprintf(stderr, "  sync after the restart: %s, code %u\n", cim_strerror(rc), code);
        fails++;
        e2e_sleep_ms(200);
    }
    if (fails)
        fprintf(stderr, "  note: %d sync(s) failed after MariaDB came back\n", fails);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(count, 2);
    cim_client_free(ca);
    cim_client_free(cb);
}

TEST_MAIN()
