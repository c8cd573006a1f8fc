/* End-to-end: groups (issue #4) against a running stack, with members on both gates: create,
 * join, send, exit, kick, disband and owner hand-over with their 0x0515 and NOTIFICATION
 * entries; offline members catching up by sync; refusals; list/info/member list; unread per
 * member; create errors; identity; history; and a 1,000-member group online on both gates
 * (100 under CIM_TEST_LIGHT) timed from send to last delivery. */
#include "../test.h"
#include "e2e_common.h"
#include "e2e_http.h"
#include "e2e_group_util.h"

#define G1 "CIM_GATE1"
#define G2 "CIM_GATE2"

static int light(void)
{
    const char *l = getenv("CIM_TEST_LIGHT"), *v = getenv("VALGRIND");
    return (l && *l && strcmp(l, "0") != 0) || (v && !strcmp(v, "1"));
}

/* Every member of ms[0..n) must get the create's 0x0515 (all members ADD, acted by owner) and
 * the group_create NOTIFICATION with owner and members. */
static void expect_created(gu_m_t **ms, size_t n, uint64_t gid, uint64_t owner, const char *name)
{
    uint64_t ids[16];
    for (size_t i = 0; i < n; i++)
        ids[i] = ms[i]->u.uid;
    for (size_t i = 0; i < n; i++) {
        gu_expect_change(ms[i], gid, owner, ids, n, GU_ADD);
        json_t *j = gu_expect_notif(ms[i], gid, "group_create");
        gu_json_id(j, "owner_id", owner);
        json_t *gn = json_object_get(j, "group_name");
        CHECK(json_is_string(gn));
        CHECK_EQ_STR(json_string_value(gn), name);
        for (size_t k = 0; k < n; k++)
            CHECK(gu_json_has_id(j, "member_ids", ids[k]));
        json_decref(j);
    }
}

/* ------------------------------------------------------------------ the seed flow */

TEST(seed_flow_create_join_send_exit)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2), c = gu_member(G1), d = gu_member(G2);
    uint64_t list[2] = {b.u.uid, c.u.uid}; /* the creator does not list itself */
    CIM__Def__CIMGroupCreateRsp *r = gu_create_req(a.c, 0, "seed group", list, 2);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK(r->group_info != NULL);
    uint64_t gid = r->group_info->group_id;
    CHECK(gid > 0);
    CHECK_EQ_INT(r->group_info->group_owner_id, a.u.uid);
    CHECK_EQ_STR(r->group_info->group_name, "seed group");
    CHECK_EQ_INT(r->n_member_id_list, 3);
    CHECK(gu_has(r->member_id_list, 3, a.u.uid));
    CHECK(gu_has(r->member_id_list, 3, b.u.uid));
    CHECK(gu_has(r->member_id_list, 3, c.u.uid));
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);

    gu_m_t *abc[3] = {&a, &b, &c};
    expect_created(abc, 3, gid, a.u.uid, "seed group");
    CHECK_EQ_INT(gu_count(d.c, IM_CMD_GROUP_MEMBER_CHANGED, 300), 0); /* not a member yet */

    /* join (join_model default): everyone, the newcomer included, hears of it */
    CHECK_EQ_INT(gu_simple(d.c, IM_CMD_GROUP_JOIN_REQ, 0, gid), 200);
    gu_m_t *all[4] = {&a, &b, &c, &d};
    for (int i = 0; i < 4; i++) {
        gu_expect_change(all[i], gid, d.u.uid, &d.u.uid, 1, GU_ADD);
        json_t *j = gu_expect_notif(all[i], gid, "group_join");
        gu_json_id(j, "user_id", d.u.uid);
        json_decref(j);
    }

    /* a message from b: every other member gets it with its own next seq */
    uint64_t m1 = gu_send_ok(&b, gid, "hello group");
    gu_expect_text(&a, gid, b.u.uid, m1, "hello group");
    gu_expect_text(&c, gid, b.u.uid, m1, "hello group");
    gu_expect_text(&d, gid, b.u.uid, m1, "hello group");
    CHECK_EQ_INT(gu_count(b.c, IM_CMD_MSG_DATA, 300), 0); /* not echoed to the sender */

    /* c exits: everyone (c too) is told, type DEL, group_exit */
    CHECK_EQ_INT(gu_simple(c.c, IM_CMD_GROUP_EXIT_REQ, 0, gid), 200);
    for (int i = 0; i < 4; i++) {
        gu_expect_change(all[i], gid, c.u.uid, &c.u.uid, 1, GU_DEL);
        json_t *j = gu_expect_notif(all[i], gid, "group_exit");
        gu_json_id(j, "user_id", c.u.uid);
        CHECK(json_object_get(j, "new_owner_id") == NULL); /* c was not the owner */
        json_decref(j);
    }

    /* a member who left stops receiving */
    uint64_t m2 = gu_send_ok(&a, gid, "after exit");
    gu_expect_text(&b, gid, a.u.uid, m2, "after exit");
    gu_expect_text(&d, gid, a.u.uid, m2, "after exit");
    CHECK_EQ_INT(gu_count(c.c, IM_CMD_MSG_DATA, GU_QUIET_MS), 0);
    cim_ack_t ack = gu_send(c.c, gid, "still here?", 0);
    CHECK_EQ_INT(ack.res_code, CIM_RES_REFUSED);
}

/* ------------------------------------------------------------------ offline member, sync */

typedef struct sync_log_s {
    CIM__Def__CIMMsgInfo e[32];
    size_t n;
} sync_log_t;

static void sync_cb(cim_client_t *c, const CIM__Def__CIMMsgInfo *m, void *ud)
{
    sync_log_t *l = ud;
    (void) c;
    if (l->n < 32)
        l->e[l->n++] = *m; /* scalars only are used afterwards */
}

TEST(offline_member_syncs_gap_free)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    gu_user_t e = gu_api_user(); /* never online until the end */
    uint64_t list[2] = {b.u.uid, e.uid};
    uint64_t gid = gu_create(a.c, "offline", list, 2);
    gu_drain(a.c, 200);
    gu_drain(b.c, 100);
    uint64_t ids[4];
    a.seq = b.seq = 1; /* fresh users: the create notification is their first entry */
    /* each delivery is awaited: a fan-out may finish after the next send is acked */
    ids[0] = gu_send_ok(&a, gid, "one");
    gu_expect_text(&b, gid, a.u.uid, ids[0], "one");
    ids[1] = gu_send_ok(&b, gid, "two");
    gu_expect_text(&a, gid, b.u.uid, ids[1], "two");
    ids[2] = gu_send_ok(&a, gid, "three");
    gu_expect_text(&b, gid, a.u.uid, ids[2], "three");
    /* a member leaves: a NOTIFICATION entry for e too */
    CHECK_EQ_INT(gu_simple(b.c, IM_CMD_GROUP_EXIT_REQ, 0, gid), 200);
    json_decref(gu_expect_notif(&a, gid, "group_exit"));
    ids[3] = gu_send_ok(&a, gid, "four");

    /* e comes online (gate 2) and syncs from 0: seq 1.. without a gap */
    cim_client_t *ec = gu_login(G2, &e, 0);
    sync_log_t log;
    memset(&log, 0, sizeof(log));
    uint64_t max_seq = 0;
    size_t count = 0;
    uint32_t code = 0;
    CHECK_EQ_INT(cim_sync(ec, 0, 0, sync_cb, &log, &max_seq, &count, &code), 0);
    if (log.n != 6)
        fprintf(stderr, "  e's inbox holds %zu entries, expected 6\n", log.n);
    CHECK_EQ_INT(log.n, 6);
    CHECK_EQ_INT(max_seq, 6);
    for (size_t i = 0; i < log.n; i++) {
        CHECK_EQ_INT(log.e[i].seq, i + 1);
        CHECK_EQ_INT(log.e[i].session_type, CIM_SESSION_GROUP);
        CHECK_EQ_INT(log.e[i].to_session_id, gid);
    }
    CHECK_EQ_INT(log.e[0].msg_type, GU_NOTIF); /* group_create */
    CHECK_EQ_INT(log.e[1].server_msg_id, ids[0]);
    CHECK_EQ_INT(log.e[1].from_user_id, a.u.uid);
    CHECK_EQ_INT(log.e[2].server_msg_id, ids[1]);
    CHECK_EQ_INT(log.e[2].from_user_id, b.u.uid);
    CHECK_EQ_INT(log.e[3].server_msg_id, ids[2]);
    CHECK_EQ_INT(log.e[4].msg_type, GU_NOTIF); /* group_exit */
    CHECK_EQ_INT(log.e[5].server_msg_id, ids[3]);
    for (int i = 1; i < 6; i++)
        if (i != 4)
            CHECK_EQ_INT(log.e[i].msg_type, CIM_MSG_TEXT);
}

/* ------------------------------------------------------------------ refusals, kick */

TEST(nonmember_refused_kick_rules)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2), c = gu_member(G1), x = gu_member(G2);
    uint64_t list[2] = {b.u.uid, c.u.uid};
    uint64_t gid = gu_create(a.c, "kick", list, 2);
    a.seq = b.seq = c.seq = 1;
    gu_drain(a.c, 200);
    gu_drain(b.c, 100);
    gu_drain(c.c, 100);

    /* a non-member's send is refused, and nobody gets it */
    cim_ack_t ack = gu_send(x.c, gid, "let me in", 0);
    CHECK_EQ_INT(ack.res_code, CIM_RES_REFUSED);
    /* a non-member cannot read the member list */
    CHECK_EQ_INT(gu_member_list(x.c, 0, gid, NULL, NULL), 3002);

    /* non-owner kick: refused, nothing changes */
    CHECK_EQ_INT(gu_members_op(b.c, IM_CMD_GROUP_KICK_REQ, 0, gid, &c.u.uid, 1), 3002);
    CHECK_EQ_INT(gu_count(c.c, IM_CMD_GROUP_MEMBER_CHANGED, 300), 0);
    CHECK_EQ_INT(gu_count(a.c, IM_CMD_MSG_DATA, 0), 0);

    /* owner kick: c is told (DEL), so is b */
    CHECK_EQ_INT(gu_members_op(a.c, IM_CMD_GROUP_KICK_REQ, 0, gid, &c.u.uid, 1), 200);
    gu_m_t *all[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        gu_expect_change(all[i], gid, a.u.uid, &c.u.uid, 1, GU_DEL);
        json_t *j = gu_expect_notif(all[i], gid, "group_kick");
        gu_json_id(j, "by", a.u.uid);
        CHECK(gu_json_has_id(j, "member_ids", c.u.uid));
        json_decref(j);
    }
    uint64_t *mem = NULL;
    size_t n = 0;
    CHECK_EQ_INT(gu_member_list(b.c, 0, gid, &mem, &n), 200);
    CHECK_EQ_INT(n, 2);
    CHECK(!gu_has(mem, n, c.u.uid));
    free(mem);

    /* and c stops receiving, and cannot send */
    uint64_t m = gu_send_ok(&a, gid, "without c");
    gu_expect_text(&b, gid, a.u.uid, m, "without c");
    CHECK_EQ_INT(gu_count(c.c, IM_CMD_MSG_DATA, GU_QUIET_MS), 0);
    CHECK_EQ_INT(gu_send(c.c, gid, "kicked", 0).res_code, CIM_RES_REFUSED);
    CHECK_EQ_INT(gu_member_list(c.c, 0, gid, NULL, NULL), 3002);
    CHECK_EQ_INT(gu_count(x.c, IM_CMD_MSG_DATA, 0), 0);
}

/* ------------------------------------------------------------------ owner hand-over */

TEST(owner_exit_hands_over_to_earliest_joined)
{
    gu_m_t a = gu_member(G1), early = gu_member(G2), late = gu_member(G1);
    /* users are numbered in creation order, so early.uid < late.uid: the group starts with
     * `late` and `early` joins afterwards, so the earliest joiner has the larger id */
    CHECK(early.u.uid < late.u.uid);
    uint64_t gid = gu_create(a.c, "handover", &late.u.uid, 1);
    e2e_sleep_ms(20);
    CHECK_EQ_INT(gu_simple(early.c, IM_CMD_GROUP_JOIN_REQ, 0, gid), 200);
    gu_drain(a.c, 300);
    gu_drain(early.c, 100);
    gu_drain(late.c, 100);

    CHECK_EQ_INT(gu_simple(a.c, IM_CMD_GROUP_EXIT_REQ, 0, gid), 200);
    a.seq = 2;
    early.seq = 1;
    late.seq = 2;
    gu_m_t *all[3] = {&a, &early, &late};
    for (int i = 0; i < 3; i++) {
        gu_expect_change(all[i], gid, a.u.uid, &a.u.uid, 1, GU_DEL);
        json_t *j = gu_expect_notif(all[i], gid, "group_exit");
        gu_json_id(j, "user_id", a.u.uid);
        gu_json_id(j, "new_owner_id", late.u.uid); /* joined first, though its id is larger */
        json_decref(j);
    }
    CHECK_EQ_INT(gu_owner(early.c, gid), late.u.uid);
    /* the new owner has the owner's rights, the other member does not */
    CHECK_EQ_INT(gu_simple(early.c, IM_CMD_GROUP_DISBAND_REQ, 0, gid), 3002);
    CHECK_EQ_INT(gu_members_op(late.c, IM_CMD_GROUP_KICK_REQ, 0, gid, &early.u.uid, 1), 200);
}

TEST(owner_exit_tie_goes_to_smallest_id)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2), c = gu_member(G1);
    uint64_t list[2] = {c.u.uid, b.u.uid}; /* added together: joined at the same time */
    uint64_t gid = gu_create(a.c, "tie", list, 2);
    CHECK_EQ_INT(gu_simple(a.c, IM_CMD_GROUP_EXIT_REQ, 0, gid), 200);
    uint64_t want = b.u.uid < c.u.uid ? b.u.uid : c.u.uid;
    CHECK_EQ_INT(gu_owner(c.c, gid), want);
    b.seq = 0;
    json_decref(gu_expect_notif(&b, gid, "group_create"));
    json_t *j = gu_expect_notif(&b, gid, "group_exit");
    gu_json_id(j, "new_owner_id", want);
    json_decref(j);
}

/* ------------------------------------------------------------------ disband */

TEST(disband_owner_only_notifies_all_then_refuses)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2), c = gu_member(G1);
    uint64_t list[2] = {b.u.uid, c.u.uid};
    uint64_t gid = gu_create(a.c, "disband", list, 2);
    a.seq = b.seq = c.seq = 1;
    gu_drain(a.c, 300);
    gu_drain(b.c, 100);
    gu_drain(c.c, 100);

    CHECK_EQ_INT(gu_simple(b.c, IM_CMD_GROUP_DISBAND_REQ, 0, gid), 3002);
    CHECK_EQ_INT(gu_count(c.c, IM_CMD_GROUP_MEMBER_CHANGED, 300), 0);

    CHECK_EQ_INT(gu_simple(a.c, IM_CMD_GROUP_DISBAND_REQ, 0, gid), 200);
    uint64_t ids[3] = {a.u.uid, b.u.uid, c.u.uid};
    gu_m_t *all[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        gu_expect_change(all[i], gid, a.u.uid, ids, 3, GU_DEL);
        json_t *j = gu_expect_notif(all[i], gid, "group_disband");
        gu_json_id(j, "by", a.u.uid);
        json_decref(j);
    }
    CHECK_EQ_INT(gu_send(a.c, gid, "anyone?", 0).res_code, CIM_RES_REFUSED);
    CHECK_EQ_INT(gu_send(b.c, gid, "anyone?", 0).res_code, CIM_RES_REFUSED);
    CHECK_EQ_INT(gu_count(c.c, IM_CMD_MSG_DATA, 300), 0);
    uint32_t code = 0;
    CHECK_EQ_INT(gu_list_version(b.c, 0, gid, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(gu_list_version(a.c, 0, gid, &code), 0);
    /* nobody can join a disbanded group */
    CHECK(gu_simple(b.c, IM_CMD_GROUP_JOIN_REQ, 0, gid) != 200);
}

/* ------------------------------------------------------------------ list, info, members */

TEST(list_info_members)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    uint64_t g1 = gu_create(a.c, "first", &b.u.uid, 1);
    uint64_t g2 = gu_create(a.c, "alone", NULL, 0);
    uint32_t code = 0;
    uint32_t v1 = gu_list_version(a.c, 0, g1, &code);
    CHECK_EQ_INT(code, 200);
    uint32_t v2 = gu_list_version(a.c, 0, g2, &code);
    CHECK(v1 > 0);
    CHECK(v2 > 0);
    CHECK_EQ_INT(gu_list_version(b.c, 0, g1, &code), v1);
    CHECK_EQ_INT(gu_list_version(b.c, 0, g2, &code), 0); /* not b's group */

    /* info: version 0 -> returned; the same version -> left out; another -> returned */
    CIM__Def__CIMGroupInfoRsp *r = gu_info(a.c, 0, g1, 0);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK_EQ_INT(r->n_group_info_list, 1);
    CHECK_EQ_INT(r->group_info_list[0]->group_id, g1);
    CHECK_EQ_STR(r->group_info_list[0]->group_name, "first");
    CHECK_EQ_INT(r->group_info_list[0]->group_owner_id, a.u.uid);
    CHECK(r->group_info_list[0]->create_time > 0);
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    r = gu_info(a.c, 0, g1, v1);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK_EQ_INT(r->n_group_info_list, 0);
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    r = gu_info(a.c, 0, g1, v1 + 7);
    CHECK_EQ_INT(r->n_group_info_list, 1);
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);

    /* member lists: members only */
    uint64_t *mem = NULL;
    size_t n = 0;
    CHECK_EQ_INT(gu_member_list(b.c, 0, g1, &mem, &n), 200);
    CHECK_EQ_INT(n, 2);
    CHECK(gu_has(mem, n, a.u.uid) && gu_has(mem, n, b.u.uid));
    free(mem);
    CHECK_EQ_INT(gu_member_list(a.c, 0, g2, &mem, &n), 200);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(mem[0], a.u.uid);
    free(mem);
    CHECK_EQ_INT(gu_member_list(b.c, 0, g2, NULL, NULL), 3002);

    /* a change bumps the version: b joins g2 */
    CHECK_EQ_INT(gu_simple(b.c, IM_CMD_GROUP_JOIN_REQ, 0, g2), 200);
    uint32_t v2b = gu_list_version(b.c, 0, g2, &code);
    CHECK(v2b > v2);
    CHECK_EQ_INT(gu_list_version(a.c, 0, g2, &code), v2b);
    r = gu_info(a.c, 0, g2, v2);
    CHECK_EQ_INT(r->n_group_info_list, 1);
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    CHECK_EQ_INT(gu_member_list(b.c, 0, g2, NULL, NULL), 200);
}

/* ------------------------------------------------------------------ unread per member */

static uint32_t group_unread(cim_client_t *c, uint64_t gid, int *found)
{
    CIM__Def__CIMRecentContactSessionRsp *r = NULL;
    uint32_t code = 0;
    int rc = cim_sessions(c, 0, &r, &code);
    if (rc != 0)
        fprintf(stderr, "  0x0201: %s code %u\n", cim_strerror(rc), code);
    CHECK_EQ_INT(rc, 0);
    uint32_t u = 0;
    *found = 0;
    for (size_t i = 0; i < r->n_contact_session_list; i++) {
        const CIM__Def__CIMContactSessionInfo *s = r->contact_session_list[i];
        if (s->session_type == CIM_SESSION_GROUP && s->session_id == gid) {
            u = s->unread_cnt;
            *found = 1;
        }
    }
    cim__def__cimrecent_contact_session_rsp__free_unpacked(r, NULL);
    return u;
}

/* Wait until the group's unread count for c is want (read acks have no answer). */
static void expect_unread(cim_client_t *c, uint64_t gid, uint32_t want)
{
    int found = 0;
    uint32_t u = 0;
    int64_t until = e2e_now_ms() + 3000;
    do {
        u = group_unread(c, gid, &found);
        if (found && u == want)
            return;
        gu_idle(100);
    } while (e2e_now_ms() < until);
    fprintf(stderr, "  user %" PRIu64 ": group unread %u (session %s), expected %u\n",
            cim_user_id(c), u, found ? "listed" : "missing", want);
    CHECK(found);
    CHECK_EQ_INT(u, want);
}

TEST(unread_per_member_cleared_by_read_ack)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2), c = gu_member(G1);
    uint64_t list[2] = {b.u.uid, c.u.uid};
    uint64_t gid = gu_create(a.c, "unread", list, 2);
    a.seq = 1;
    /* build b's and c's unread caches before the messages (and after: rebuilt) */
    expect_unread(b.c, gid, 0); /* the NOTIFICATION entry never counts */
    uint64_t m[3];
    m[0] = gu_send_ok(&a, gid, "u1");
    m[1] = gu_send_ok(&a, gid, "u2");
    m[2] = gu_send_ok(&a, gid, "u3");
    expect_unread(b.c, gid, 3);
    expect_unread(c.c, gid, 3);
    expect_unread(a.c, gid, 0); /* own messages are not unread */

    CHECK_EQ_INT(cim_read_ack(b.c, CIM_SESSION_GROUP, gid, m[2]), 0);
    expect_unread(b.c, gid, 0);
    CHECK_EQ_INT(cim_read_ack(c.c, CIM_SESSION_GROUP, gid, m[0]), 0);
    expect_unread(c.c, gid, 2); /* per member */
    expect_unread(b.c, gid, 0);
}

/* ------------------------------------------------------------------ create errors */

TEST(create_unknown_member_not_found)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    uint64_t unknown = (1ULL << 52) + (uint64_t) getpid(); /* never allocated */
    uint64_t list[2] = {b.u.uid, unknown};
    CHECK_EQ_INT(gu_create_code(a.c, 0, "unknown", list, 2), 3003);
    /* nothing was created: b heard nothing and belongs to no group */
    CHECK_EQ_INT(gu_count(b.c, IM_CMD_GROUP_MEMBER_CHANGED, 300), 0);
    CIM__Def__CIMGroupListReq q = CIM__DEF__CIMGROUP_LIST_REQ__INIT;
    CIM__Def__CIMGroupListRsp *r =
        (CIM__Def__CIMGroupListRsp *) gu_call(b.c, IM_CMD_GROUP_LIST_REQ, &q, IM_CMD_GROUP_LIST_RSP,
                                              &cim__def__cimgroup_list_rsp__descriptor);
    CHECK_EQ_INT(r->n_group_version_list, 0);
    cim__def__cimgroup_list_rsp__free_unpacked(r, NULL);
}

TEST(create_unknown_member_id_above_2_53_not_found)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    uint64_t list[2] = {b.u.uid, 1ULL << 60}; /* no user has such an id */
    uint32_t code = gu_create_code(a.c, 0, "huge id", list, 2);
    if (code != 3003)
        fprintf(stderr,
                "  create naming user 2^60: result_code %u (PROTOCOL.md section 5: "
                "unknown user -> NOT_FOUND 3003 for the whole request)\n",
                code);
    CHECK_EQ_INT(code, 3003);
}

TEST(create_empty_list_and_name_rules)
{
    gu_m_t a = gu_member(G1);
    CIM__Def__CIMGroupCreateRsp *r = gu_create_req(a.c, 0, "just me", NULL, 0);
    CHECK_EQ_INT(r->result_code, 200);
    CHECK_EQ_INT(r->n_member_id_list, 1);
    CHECK_EQ_INT(r->member_id_list[0], a.u.uid);
    CHECK_EQ_INT(r->group_info->group_owner_id, a.u.uid);
    uint64_t gid = r->group_info->group_id;
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    a.seq = 0;
    gu_expect_change(&a, gid, a.u.uid, &a.u.uid, 1, GU_ADD);
    json_decref(gu_expect_notif(&a, gid, "group_create"));

    char ascii[140];
    memset(ascii, 'n', 129);
    ascii[129] = '\0';
    CHECK_EQ_INT(gu_create_code(a.c, 0, ascii, NULL, 0), 3001);
    ascii[128] = '\0';
    CHECK_EQ_INT(gu_create_code(a.c, 0, ascii, NULL, 0), 200);
    /* invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong form.
     * protobuf-c does not check string fields, so these reach the server as sent. */
    CHECK_EQ_INT(gu_create_code(a.c, 0, "bad \x80 name", NULL, 0), 3001);
    CHECK_EQ_INT(gu_create_code(a.c, 0, "cut \xe2\x82", NULL, 0), 3001);
    CHECK_EQ_INT(gu_create_code(a.c, 0, "bad \xff", NULL, 0), 3001);
    char name[600] = "";
    for (int i = 0; i < 129; i++)
        strcat(name, "\xc3\xa9"); /* 129 x e-acute: 129 characters */
    CHECK_EQ_INT(gu_create_code(a.c, 0, name, NULL, 0), 3001);
}

/* group_name counts characters: 128 two-byte characters are a valid name, kept whole. */
TEST(create_name_128_multibyte_chars_kept)
{
    gu_m_t a = gu_member(G1);
    char name[600] = "";
    for (int i = 0; i < 128; i++)
        strcat(name, "\xc3\xa9"); /* e-acute */
    CIM__Def__CIMGroupCreateRsp *r = gu_create_req(a.c, 0, name, NULL, 0);
    CHECK_EQ_INT(r->result_code, 200);
    uint64_t gid = r->group_info->group_id;
    size_t got = strlen(r->group_info->group_name);
    if (got != strlen(name))
        fprintf(stderr, "  create answered a group_name of %zu bytes for one of %zu bytes\n", got,
                strlen(name));
    CHECK_EQ_STR(r->group_info->group_name, name);
    cim__def__cimgroup_create_rsp__free_unpacked(r, NULL);
    CIM__Def__CIMGroupInfoRsp *ir = gu_info(a.c, 0, gid, 0);
    CHECK_EQ_INT(ir->n_group_info_list, 1);
    CHECK_EQ_STR(ir->group_info_list[0]->group_name, name);
    cim__def__cimgroup_info_rsp__free_unpacked(ir, NULL);
}

TEST(create_overlong_utf8_name_refused)
{
    gu_m_t a = gu_member(G1);
    /* "\xc0\xaf" is an overlong '/', "\xed\xa0\x80" a UTF-16 surrogate: not valid UTF-8 */
    uint32_t c1 = gu_create_code(a.c, 0, "over \xc0\xaf long", NULL, 0);
    uint32_t c2 = gu_create_code(a.c, 0, "sur \xed\xa0\x80 rogate", NULL, 0);
    if (c1 != 3001 || c2 != 3001)
        fprintf(stderr, "  overlong: %u, surrogate: %u (group_name must be valid UTF-8 -> 3001)\n",
                c1, c2);
    CHECK_EQ_INT(c1, 3001);
    CHECK_EQ_INT(c2, 3001);
}

/* ------------------------------------------------------------------ identity */

TEST(identity_someone_elses_id_refused)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    uint64_t gid = gu_create(a.c, "identity", &b.u.uid, 1);
    /* the own id is accepted */
    CHECK_EQ_INT(gu_create_code(a.c, a.u.uid, "own id", NULL, 0), 200);
    /* someone else's: refused everywhere */
    CHECK_EQ_INT(gu_create_code(a.c, b.u.uid, "as b", NULL, 0), 3002);
    CHECK_EQ_INT(gu_simple(a.c, IM_CMD_GROUP_EXIT_REQ, b.u.uid, gid), 3002);
    CHECK_EQ_INT(gu_simple(b.c, IM_CMD_GROUP_DISBAND_REQ, a.u.uid, gid), 3002);
    CHECK_EQ_INT(gu_members_op(b.c, IM_CMD_GROUP_KICK_REQ, a.u.uid, gid, &b.u.uid, 1), 3002);
    CHECK_EQ_INT(gu_member_list(b.c, a.u.uid, gid, NULL, NULL), 3002);
    uint32_t code = 0;
    gu_list_version(b.c, a.u.uid, gid, &code);
    CHECK_EQ_INT(code, 3002);
    CIM__Def__CIMGroupInfoRsp *r = gu_info(b.c, a.u.uid, gid, 0);
    CHECK_EQ_INT(r->result_code, 3002);
    CHECK_EQ_INT(r->n_group_info_list, 0);
    cim__def__cimgroup_info_rsp__free_unpacked(r, NULL);
    gu_m_t x = gu_member(G1);
    CHECK_EQ_INT(gu_simple(x.c, IM_CMD_GROUP_JOIN_REQ, a.u.uid, gid), 3002);
    /* a group send claiming another sender */
    CHECK_EQ_INT(gu_send(b.c, gid, "I am a", a.u.uid).res_code, CIM_RES_REFUSED);
    /* nothing happened: b is still a member, the group still exists with 2 members */
    uint64_t *mem = NULL;
    size_t n = 0;
    CHECK_EQ_INT(gu_member_list(b.c, 0, gid, &mem, &n), 200);
    CHECK_EQ_INT(n, 2);
    free(mem);
    CHECK_EQ_INT(gu_owner(b.c, gid), a.u.uid);
}

/* ------------------------------------------------------------------ history */

TEST(history_on_group_session)
{
    gu_m_t a = gu_member(G1), b = gu_member(G2);
    uint64_t gid = gu_create(a.c, "history", &b.u.uid, 1);
    gu_drain(a.c, 200);
    gu_drain(b.c, 100);
    a.seq = 1;
    b.seq = 1;
    uint64_t ids[3];
    ids[0] = gu_send_ok(&a, gid, "h1");
    gu_expect_text(&b, gid, a.u.uid, ids[0], "h1");
    ids[1] = gu_send_ok(&b, gid, "h2");
    gu_expect_text(&a, gid, b.u.uid, ids[1], "h2");
    ids[2] = gu_send_ok(&a, gid, "h3");
    gu_expect_text(&b, gid, a.u.uid, ids[2], "h3"); /* b's inbox row follows a's ack */
    CHECK(ids[0] < ids[1] && ids[1] < ids[2]);
    gu_m_t *who[2] = {&a, &b};
    for (int w = 0; w < 2; w++) {
        CIM__Def__CIMGetMsgListRsp *r = NULL;
        uint32_t code = 0;
        CHECK_EQ_INT(cim_history(who[w]->c, CIM_SESSION_GROUP, gid, 0, 20, &r, &code), 0);
        /* newest first: h3, h2, h1, then the group_create NOTIFICATION */
        if (r->n_msg_list != 4)
            fprintf(stderr, "  user %" PRIu64 ": history has %zu entries, expected 4\n",
                    who[w]->u.uid, r->n_msg_list);
        CHECK_EQ_INT(r->n_msg_list, 4);
        for (int i = 0; i < 3; i++) {
            const CIM__Def__CIMMsgInfo *m = r->msg_list[i];
            CHECK_EQ_INT(m->server_msg_id, ids[2 - i]);
            CHECK_EQ_INT(m->session_type, CIM_SESSION_GROUP);
            CHECK_EQ_INT(m->to_session_id, gid);
            CHECK_EQ_INT(m->msg_type, CIM_MSG_TEXT);
        }
        CHECK_EQ_INT(r->msg_list[1]->from_user_id, b.u.uid);
        CHECK(r->msg_list[1]->msg_data.len == 2 && !memcmp(r->msg_list[1]->msg_data.data, "h2", 2));
        CHECK_EQ_INT(r->msg_list[3]->msg_type, GU_NOTIF);
        cim__def__cimget_msg_list_rsp__free_unpacked(r, NULL);
    }
    /* a non-member's history of the group is empty */
    gu_m_t x = gu_member(G1);
    CIM__Def__CIMGetMsgListRsp *r = NULL;
    uint32_t code = 0;
    int rc = cim_history(x.c, CIM_SESSION_GROUP, gid, 0, 20, &r, &code);
    CHECK(rc == 0 || rc == CIM_ERESULT);
    if (r) {
        CHECK_EQ_INT(r->n_msg_list, 0);
        cim__def__cimget_msg_list_rsp__free_unpacked(r, NULL);
    }
}

/* ------------------------------------------------------------------ 1,000 members */

TEST(big_group_1000_online_fan_out)
{
    int n = light() ? 100 : 1000;
    int64_t t0 = e2e_now_ms();
    gu_user_t *users = calloc((size_t) n, sizeof(gu_user_t));
    CHECK(users != NULL);
    gu_api_users(users, (size_t) n);
    int64_t t1 = e2e_now_ms();
    gf_t f;
    CHECK_EQ_INT(gf_login_all(&f, users, n, gf_hb_ms()), 0);
    int64_t t2 = e2e_now_ms();
    uint64_t gid = gf_create_group(&f, 0, "big group");
    CHECK(gid > 0);
    /* everyone gets the create's NOTIFICATION entry (seq 1: fresh users) */
    int short_ = gf_wait_seq(&f, 1, 30000);
    if (short_)
        fprintf(stderr, "  %d member(s) without the group_create entry\n", short_);
    CHECK_EQ_INT(short_, 0);
    int64_t t3 = e2e_now_ms();
    int no_changed = 0;
    for (int i = 0; i < n; i++)
        no_changed += f.c[i].n_changed == 0;
    CHECK_EQ_INT(no_changed, 0);

    int64_t ack_ms = 0, last_ms = 0;
    uint32_t got = gf_time_message(&f, 1 % n, gid, 30000, &ack_ms, &last_ms);
    printf("  %d-member group: %d users via API %lld ms, %d logins (2 gates) %lld ms, create + "
           "notifications %lld ms; one message: ack %lld ms, last of %u deliveries %lld ms\n",
           n, n, (long long) (t1 - t0), n, (long long) (t2 - t1), (long long) (t3 - t2),
           (long long) ack_ms, got, (long long) last_ms);
    CHECK_EQ_INT(f.ack_res, CIM_RES_OK);
    CHECK_EQ_INT(f.ack_seq, 2);
    CHECK_EQ_INT(got, (uint32_t) n - 1);
    CHECK(last_ms >= 0);
    int bad_seq = 0;
    for (int i = 0; i < n; i++)
        if (i != 1 % n && f.c[i].got_seq != 2)
            bad_seq++;
    CHECK_EQ_INT(bad_seq, 0);
    int gaps = 0;
    for (int i = 0; i < n; i++)
        gaps += (int) f.c[i].gaps;
    CHECK_EQ_INT(gaps, 0);
    CHECK_EQ_INT(gf_open(&f), n);
    gf_free(&f);
    free(users);
}

/* PROTOCOL.md: 0x0515 goes to every member on exit; DESIGN.md ("Large groups", the newer
 * rule): above notify_all_max (500) members only the members affected and the owner are told,
 * everyone else sees the change through group_version. */
TEST(big_group_exit_notifies_every_member)
{
    int n = light() ? 60 : 520;
    gu_user_t *users = calloc((size_t) n, sizeof(gu_user_t));
    CHECK(users != NULL);
    gu_api_users(users, (size_t) n);
    gf_t f;
    CHECK_EQ_INT(gf_login_all(&f, users, n, gf_hb_ms()), 0);
    uint64_t gid = gf_create_group(&f, 0, "exit in a big group");
    CHECK(gid > 0);
    CHECK_EQ_INT(gf_wait_seq(&f, 1, 30000), 0);
    gf_pump(&f, 300);
    for (int i = 0; i < n; i++)
        f.c[i].n_changed = 0;
    CIM__Def__CIMGroupExitReq q = CIM__DEF__CIMGROUP_EXIT_REQ__INIT;
    q.group_id = gid;
    CIM__Def__CIMGroupExitRsp *r = (CIM__Def__CIMGroupExitRsp *) gf_call(
        &f, n - 1, IM_CMD_GROUP_EXIT_REQ, (const ProtobufCMessage *) &q, IM_CMD_GROUP_EXIT_RSP,
        &cim__def__cimgroup_exit_rsp__descriptor, 10000);
    CHECK(r != NULL);
    CHECK_EQ_INT(r->result_code, 200);
    cim__def__cimgroup_exit_rsp__free_unpacked(r, NULL);
    int short_ = gf_wait_seq(&f, 2, 10000); /* the group_exit NOTIFICATION entry */
    gf_pump(&f, 300);
    int big = n > 500; /* notify_all_max */
    int missing = 0, extra = 0;
    for (int i = 0; i < n; i++) {
        int expected = !big || i == 0 || i == n - 1; /* everyone, or the owner and the leaver */
        if (expected)
            missing += f.c[i].n_changed == 0;
        else
            extra += f.c[i].n_changed != 0;
    }
    if (missing || extra || (!big && short_))
        fprintf(stderr,
                "  exit of one member of a %d-member group: %d expected member(s) got no 0x0515, "
                "%d unexpected got one, %d short of the group_exit entry\n",
                n, missing, extra, short_);
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(extra, 0);
    if (!big)
        CHECK_EQ_INT(short_, 0);
    gf_free(&f);
    free(users);
}

TEST_MAIN()
