/* End-to-end: the online list (0x0603 paging) and presence changes (0x0605) on login, logout,
 * API kick, idle timeout, several devices of one user, and a gate that dies. */
#include "../test.h"
#include "e2e_api_util.h"

static cim_client_t *subscriber(uint64_t *uid)
{
    cim_client_t *s = au_user("CIM_GATE1", "psub", IM_CT_PC_WINDOWS, uid, NULL);
    CIM__Def__CIMOnlineUserListRsp *o = NULL;
    CHECK_EQ_INT(au_online(s, 0, 1, 1, &o), 0);
    au_online_free(o);
    return s;
}

TEST(presence_online_list_paging)
{
    enum { N = 12 };
    cim_client_t *cs[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++)
        cs[i] = au_user(i % 2 ? "CIM_GATE2" : "CIM_GATE1", "pols", IM_CT_PC_WINDOWS, &ids[i], NULL);
    cim_client_t *q = cs[0];
    CIM__Def__CIMOnlineUserListRsp *o = NULL;
    CHECK_EQ_INT(au_online(q, 0, 0, 0, &o), 0); /* limit 0: 50 */
    uint32_t total = o->total_online;
    CHECK(total >= N);
    CHECK_EQ_INT(o->n_user_list, total < 50 ? total : 50);
    CHECK_EQ_INT(o->next_offset, total > 50 ? 50 : 0);
    au_online_free(o);

    /* pages of 5 cover everyone once, in ascending user id order */
    int seen[N] = {0};
    uint32_t off = 0, pages = 0, count = 0;
    uint64_t last = 0;
    for (;;) {
        CHECK_EQ_INT(au_online(q, off, 5, 0, &o), 0);
        CHECK_EQ_INT(o->total_online, total);
        CHECK(o->n_user_list <= 5);
        for (size_t i = 0; i < o->n_user_list; i++) {
            uint64_t u = o->user_list[i]->user_id;
            CHECK(u > last);
            last = u;
            for (int k = 0; k < N; k++)
                if (ids[k] == u)
                    seen[k]++;
        }
        count += (uint32_t) o->n_user_list;
        pages++;
        uint32_t next = o->next_offset;
        if (next) {
            CHECK_EQ_INT(o->n_user_list, 5);
            CHECK_EQ_INT(next, off + 5);
        }
        au_online_free(o);
        if (!next)
            break;
        off = next;
        CHECK(pages < 1000);
    }
    for (int k = 0; k < N; k++)
        CHECK_EQ_INT(seen[k], 1);
    CHECK_EQ_INT(count, total);
    CHECK_EQ_INT(pages, (total + 4) / 5);

    /* past the end: empty, next_offset 0 */
    CHECK_EQ_INT(au_online(q, total + 10, 5, 0, &o), 0);
    CHECK_EQ_INT(o->n_user_list, 0);
    CHECK_EQ_INT(o->next_offset, 0);
    au_online_free(o);
    /* limit above 200 is capped, never an error */
    CHECK_EQ_INT(au_online(q, 0, 100000, 0, &o), 0);
    CHECK(o->n_user_list <= 200);
    CHECK_EQ_INT(o->n_user_list, total < 200 ? total : 200);
    au_online_free(o);

    /* a user who leaves drops out of the list */
    uint32_t code = 0;
    CHECK_EQ_INT(cim_logout(cs[N - 1], &code), 0);
    cim_wait_closed(cs[N - 1], 3000);
    int64_t end = e2e_now_ms() + 5000;
    int still = 1;
    while (still && e2e_now_ms() < end) {
        still = 0;
        for (off = 0;;) {
            CHECK_EQ_INT(au_online(q, off, 200, 0, &o), 0);
            for (size_t i = 0; i < o->n_user_list; i++)
                if (o->user_list[i]->user_id == ids[N - 1])
                    still = 1;
            off = o->next_offset;
            au_online_free(o);
            if (!off)
                break;
        }
        if (still)
            e2e_sleep_ms(100);
    }
    CHECK(!still);
    for (int i = 0; i < N; i++)
        cim_client_free(cs[i]);
}

/* every entry of the online list carries the user's nick name, whichever logic served the
 * user's login and whichever answers the list */
TEST(presence_online_list_nicks)
{
    enum { N = 6 };
    cim_client_t *cs[N];
    uint64_t ids[N];
    char names[N][40];
    for (int i = 0; i < N; i++)
        cs[i] = au_user(i % 2 ? "CIM_GATE2" : "CIM_GATE1", "pnick", IM_CT_PC_WINDOWS, &ids[i],
                        names[i]);
    for (int q = 0; q < N; q++) {
        int found = 0;
        for (uint32_t off = 0;;) {
            CIM__Def__CIMOnlineUserListRsp *o = NULL;
            CHECK_EQ_INT(au_online(cs[q], off, 200, 0, &o), 0);
            for (size_t i = 0; i < o->n_user_list; i++)
                for (int k = 0; k < N; k++)
                    if (o->user_list[i]->user_id == ids[k]) {
                        found++;
                        if (strcmp(o->user_list[i]->nick_name, names[k]) != 0)
                            fprintf(stderr,
                                    "  asked by %" PRIu64 ": user %" PRIu64
                                    " listed with nick \"%s\", want \"%s\"\n",
                                    ids[q], ids[k], o->user_list[i]->nick_name, names[k]);
                        CHECK_EQ_STR(o->user_list[i]->nick_name, names[k]);
                    }
            off = o->next_offset;
            au_online_free(o);
            if (!off)
                break;
        }
        CHECK_EQ_INT(found, N);
    }
    for (int i = 0; i < N; i++)
        cim_client_free(cs[i]);
}

TEST(presence_login_logout_devices)
{
    uint64_t sid, uid;
    char name[40];
    cim_client_t *s = subscriber(&sid);
    int online = -1;
    uint32_t ct = 99;
    /* first device: online */
    cim_client_t *d1 = au_user("CIM_GATE2", "pdev", IM_CT_ANDROID, &uid, name);
    CHECK(au_presence(s, uid, 5000, &online, &ct));
    CHECK_EQ_INT(online, 1);
    CHECK_EQ_INT(ct, IM_CT_ANDROID);
    /* second device: no second "online" */
    cim_client_t *d2 = au_login("CIM_GATE1", name, IM_CT_WEB);
    CHECK(!au_presence(s, uid, 1500, &online, &ct));
    /* first device leaves: still online */
    uint32_t code = 0;
    CHECK_EQ_INT(cim_logout(d1, &code), 0);
    CHECK_EQ_INT(cim_wait_closed(d1, 3000), 1);
    /* d2 sends nothing while the test waits; the test gates close a connection idle for 3 s,
     * which would take the user offline inside the window below */
    CHECK_EQ_INT(cim_heartbeat(d2, 3000), 0);
    CHECK(!au_presence(s, uid, 1500, &online, &ct));
    CHECK_EQ_INT(au_user_online(uid, NULL, NULL), 1);
    /* last device leaves (a plain close, no logout): offline */
    cim_client_free(d2);
    CHECK(au_presence(s, uid, 5000, &online, &ct));
    CHECK_EQ_INT(online, 0);
    CHECK_EQ_INT(ct, IM_CT_WEB);

    /* a same-type relogin kicks the old connection: never offline in between */
    cim_client_t *e1 = au_login("CIM_GATE1", name, IM_CT_IOS);
    CHECK(au_presence(s, uid, 5000, &online, &ct));
    CHECK_EQ_INT(online, 1);
    cim_client_t *e2 = au_login("CIM_GATE2", name, IM_CT_IOS);
    CHECK_EQ_INT(cim_wait_closed(e1, 5000), 1);
    CHECK(!au_presence(s, uid, 1500, &online, &ct));
    CHECK_EQ_INT(au_user_online(uid, NULL, NULL), 1);

    /* unsubscribed: nothing more arrives */
    CIM__Def__CIMOnlineUserListRsp *o = NULL;
    CHECK_EQ_INT(au_online(s, 0, 1, 2, &o), 0);
    au_online_free(o);
    cim_client_free(e2);
    CHECK(!au_presence(s, uid, 2000, &online, &ct));
    cim_client_free(e1);
    cim_client_free(d1);
    cim_client_free(s);
}

TEST(presence_kick_and_idle_timeout)
{
    uint64_t sid, u1, u2;
    cim_client_t *s = subscriber(&sid);
    int online = -1;
    uint32_t ct = 0;
    cim_client_t *c1 = au_user("CIM_GATE2", "pkick", IM_CT_MAC_OS, &u1, NULL);
    CHECK(au_presence(s, u1, 5000, &online, &ct));
    CHECK_EQ_INT(online, 1);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/kick", u1);
    e2e_http_rsp_t r;
    au_api("POST", path, NULL, &r);
    AU_EXPECT(&r, 200, 0);
    CHECK_EQ_INT(e2e_json_int(&r, "kicked", -1), 1);
    e2e_http_rsp_free(&r);
    CHECK(au_presence(s, u1, 5000, &online, &ct));
    CHECK_EQ_INT(online, 0);
    CHECK_EQ_INT(ct, IM_CT_MAC_OS);
    CHECK_EQ_INT(cim_wait_closed(c1, 3000), 1);

    /* a client that stops sending is closed after the idle timeout (3 s here): offline */
    cim_client_t *c2 = au_user("CIM_GATE1", "pidle", IM_CT_ANDROID, &u2, NULL);
    cim_set_heartbeat_interval(c2, 0);
    CHECK(au_presence(s, u2, 5000, &online, &ct));
    CHECK_EQ_INT(online, 1);
    int64_t t0 = e2e_now_ms();
    CHECK(au_presence(s, u2, 12000, &online, &ct));
    int64_t waited = e2e_now_ms() - t0;
    CHECK_EQ_INT(online, 0);
    fprintf(stderr, "  idle client went offline after %lld ms\n", (long long) waited);
    CHECK(waited >= 1500);
    CHECK_EQ_INT(cim_wait_closed(c2, 1000), 1);
    CHECK_EQ_INT(au_user_online(u2, NULL, NULL), 0);
    /* the subscriber itself, heartbeating, stayed */
    CHECK_EQ_INT(cim_heartbeat(s, E2E_CALL_MS), 0);
    cim_client_free(c1);
    cim_client_free(c2);
    cim_client_free(s);
}

/* last: it kills gate2 (and starts it again) */
TEST(presence_gate_killed)
{
    uint64_t sid, u1, u2;
    cim_client_t *s = subscriber(&sid);
    cim_client_t *c1 = au_user("CIM_GATE2", "pgk", IM_CT_PC_WINDOWS, &u1, NULL);
    cim_client_t *c2 = au_user("CIM_GATE2", "pgk", IM_CT_WEB, &u2, NULL);
    int online = -1;
    CHECK(au_presence(s, u1, 5000, &online, NULL));
    CHECK_EQ_INT(online, 1);
    CHECK_EQ_INT(au_user_online(u1, NULL, NULL), 1);
    CHECK_EQ_INT(au_user_online(u2, NULL, NULL), 1);
    long long before = au_online_count(NULL);

    CHECK_EQ_INT(e2e_ctl("kill", "gate2"), 0);
    int64_t t0 = e2e_now_ms();
    int gone = 0;
    while (!gone && e2e_now_ms() - t0 < 20000) {
        gone = !au_user_online(u1, NULL, NULL) && !au_user_online(u2, NULL, NULL);
        if (!gone) {
            cim_poll(s, 200); /* keeps the subscriber's heartbeat going; pushes are queued */
        }
    }
    long long ms = e2e_now_ms() - t0;
    fprintf(stderr, "  gate2's users left the online set after %lld ms\n", ms);
    CHECK(gone);
    /* registry TTL 5 s; the logics call a gate dead 2 TTLs after its entry lapsed (<= ~16 s) */
    CHECK(ms <= 18000);
    long long after = au_online_count(NULL);
    CHECK(after <= before - 2);
    CHECK(au_presence(s, u1, 5000, &online, NULL));
    CHECK_EQ_INT(online, 0);
    /* the 0x0603 list agrees */
    CIM__Def__CIMOnlineUserListRsp *o = NULL;
    CHECK_EQ_INT(au_online(s, 0, 200, 0, &o), 0);
    for (size_t i = 0; i < o->n_user_list; i++)
        CHECK(o->user_list[i]->user_id != u1 && o->user_list[i]->user_id != u2);
    au_online_free(o);

    CHECK_EQ_INT(e2e_ctl("start", "gate2"), 0);
    cim_client_free(c1);
    cim_client_free(c2);
    /* gate2 serves again */
    cim_client_t *c3 = au_user("CIM_GATE2", "pgk", IM_CT_PC_WINDOWS, &u1, NULL);
    CHECK(au_presence(s, u1, 5000, &online, NULL));
    CHECK_EQ_INT(online, 1);
    cim_client_free(c3);
    cim_client_free(s);
}

TEST_MAIN()
