/* End-to-end: accounts and sessions (issue #2) against a running stack: register, password
 * and token login, the users/token HTTP API, logout, kickout, several client types, and a
 * login path that survives losing one of the two msg_logic processes. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>

#include "../test.h"
#include "e2e_common.h"
#include "e2e_http.h"

#define UNKNOWN_UID "9007199254740000" /* below 2^53, never allocated in a test database */

/* ------------------------------------------------------------------ helpers */

static uint32_t register_code(const char *gate_env, const char *name, const char *pwd)
{
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    int rc = cim_register(c, name, pwd, "nick", &code, NULL);
    CHECK(rc == 0 || rc == CIM_ERESULT);
    cim_client_free(c);
    return code;
}

static uint32_t password_login_code(const char *gate_env, const char *name, const char *pwd)
{
    cim_client_t *c = e2e_connect(gate_env);
    uint32_t code = 0;
    int rc = cim_login_password(c, name, pwd, IM_CT_PC_WINDOWS, &code);
    CHECK(rc == 0 || rc == CIM_ERESULT);
    cim_client_free(c);
    return code;
}

static void api(const char *method, const char *path, const char *key, const char *body,
                e2e_http_rsp_t *r)
{
    int rc = e2e_http(e2e_env("CIM_API"), method, path, key, body, r);
    if (rc != 0)
        fprintf(stderr, "  HTTP %s %s: no answer from %s\n", method, path, getenv("CIM_API"));
    CHECK_EQ_INT(rc, 0);
}

static void check_status(const e2e_http_rsp_t *r, int status)
{
    if (r->status != status)
        fprintf(stderr, "  HTTP status %d, body: %s\n", r->status, r->body ? r->body : "");
    CHECK_EQ_INT(r->status, status);
}

/* POST /api/v1/users {"user_name", "nick_name", "password"} -> user id and token (copied). */
static uint64_t api_create_user(const char *name, char *token, size_t tsize)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"user_name\":\"%s\",\"nick_name\":\"api %s\",\"password\":\"%s\"}", name, name,
             E2E_PWD);
    e2e_http_rsp_t r;
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r);
    check_status(&r, 200);
    CHECK(r.json != NULL);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 0);
    long long uid = e2e_json_int(&r, "user_id", 0);
    CHECK(uid > 0);
    const char *tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    snprintf(token, tsize, "%s", tok);
    e2e_http_rsp_free(&r);
    return (uint64_t) uid;
}

/* ------------------------------------------------------------------ register */

TEST(register_ok)
{
    char name[40];
    e2e_uniq(name, sizeof(name), "reg");
    cim_client_t *c = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    uint64_t uid = 0;
    CHECK_EQ_INT(cim_register(c, name, E2E_PWD, "Reg Nick", &code, &uid), 0);
    CHECK_EQ_INT(code, 200);
    CHECK(uid > 0 && uid < (1ULL << 53));
    /* register does not log in, the connection stays usable, and the password works */
    CHECK_EQ_INT(cim_logged_in(c), 0);
    CHECK_EQ_INT(cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_user_id(c), uid);
    cim_client_free(c);

    /* a second registration gets another id; valid boundary values are accepted */
    char n32[40], pw128[129];
    e2e_uniq(n32, sizeof(n32), "r.x-");
    size_t l = strlen(n32);
    memset(n32 + l, 'z', 32 - l);
    n32[32] = '\0';
    memset(pw128, 'p', 128);
    pw128[128] = '\0';
    c = e2e_connect("CIM_GATE2");
    uint64_t uid2 = 0;
    CHECK_EQ_INT(cim_register(c, n32, "123456", NULL, &code, &uid2), 0);
    CHECK(uid2 > 0 && uid2 != uid);
    cim_client_free(c);
    char n2[40];
    e2e_uniq(n2, sizeof(n2), "rpw");
    CHECK_EQ_INT(register_code("CIM_GATE1", n2, pw128), 200);
    CHECK_EQ_INT(password_login_code("CIM_GATE2", n2, pw128), 200);
    CHECK_EQ_INT(password_login_code("CIM_GATE1", n32, "123456"), 200);
}

TEST(register_duplicate)
{
    char name[40], upper[40];
    e2e_uniq(name, sizeof(name), "dup");
    for (size_t i = 0; i <= strlen(name); i++)
        upper[i] = (char) toupper((unsigned char) name[i]);
    uint64_t uid = e2e_register("CIM_GATE1", name, E2E_PWD);

    cim_client_t *c = e2e_connect("CIM_GATE2");
    uint32_t code = 0;
    uint64_t uid2 = 7;
    CHECK_EQ_INT(cim_register(c, name, "other-pw", NULL, &code, &uid2), CIM_ERESULT);
    CHECK_EQ_INT(code, 9000);
    CHECK_EQ_INT(uid2, 0);
    CHECK_EQ_INT(cim_register(c, upper, "other-pw", NULL, &code, NULL), CIM_ERESULT);
    CHECK_EQ_INT(code, 9000);
    /* the failed registers left the connection open and usable */
    CHECK(cim_is_connected(c));
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    CHECK_EQ_INT(cim_login_password(c, name, E2E_PWD, IM_CT_ANDROID, &code), 0);
    CHECK_EQ_INT(cim_user_id(c), uid);
    cim_client_free(c);
    /* the original password is unchanged */
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, "other-pw"), 2003);
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, E2E_PWD), 200);
}

TEST(register_invalid)
{
    char n33[34], pw129[130], ok[40];
    memset(n33, 'a', 33);
    n33[33] = '\0';
    memset(pw129, 'p', 129);
    pw129[129] = '\0';
    e2e_uniq(ok, sizeof(ok), "inv");
    static const char *bad_names[] = {"",         "ab",           "bad name",  "bad/name",
                                      "bad@name", "n\xc3\xa4me1", "semi;colon"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        uint32_t code = register_code(i % 2 ? "CIM_GATE1" : "CIM_GATE2", bad_names[i], E2E_PWD);
        if (code != 9001)
            fprintf(stderr, "  name \"%s\": %u\n", bad_names[i], code);
        CHECK_EQ_INT(code, 9001);
    }
    CHECK_EQ_INT(register_code("CIM_GATE1", n33, E2E_PWD), 9001);
    CHECK_EQ_INT(register_code("CIM_GATE1", ok, "12345"), 9001);
    CHECK_EQ_INT(register_code("CIM_GATE2", ok, pw129), 9001);
    CHECK_EQ_INT(register_code("CIM_GATE2", ok, ""), 9001);
    /* none of those created the valid name: it is still free */
    CHECK_EQ_INT(password_login_code("CIM_GATE1", ok, "12345"), 2003);

    /* several failures on one connection keep it open */
    cim_client_t *c = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    CHECK_EQ_INT(cim_register(c, "x", E2E_PWD, NULL, &code, NULL), CIM_ERESULT);
    CHECK_EQ_INT(code, 9001);
    CHECK_EQ_INT(cim_register(c, ok, "short", NULL, &code, NULL), CIM_ERESULT);
    CHECK_EQ_INT(code, 9001);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    CHECK_EQ_INT(cim_register(c, ok, E2E_PWD, NULL, &code, NULL), 0);
    CHECK_EQ_INT(cim_login_password(c, ok, E2E_PWD, IM_CT_PC_WINDOWS, &code), 0);
    cim_client_free(c);
}

/* ------------------------------------------------------------------ login */

TEST(login_password_ok)
{
    char name[40];
    e2e_uniq(name, sizeof(name), "lpw");
    uint64_t uid = e2e_register("CIM_GATE2", name, E2E_PWD);
    cim_client_t *c = e2e_connect("CIM_GATE1");
    uint32_t code = 0;
    CHECK_EQ_INT(cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_user_id(c), uid);
    CHECK(strlen(cim_token(c)) >= 16);
    CHECK_EQ_INT(cim_logged_in(c), 1);
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    cim_client_free(c);
}

TEST(login_bad_password_and_unknown_user)
{
    char name[40], nobody[40];
    e2e_uniq(name, sizeof(name), "lbad");
    e2e_uniq(nobody, sizeof(nobody), "nobody");
    e2e_register("CIM_GATE1", name, E2E_PWD);
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, "wrong-pw1"), 2003);
    CHECK_EQ_INT(password_login_code("CIM_GATE2", name, ""), 2003);
    CHECK_EQ_INT(password_login_code("CIM_GATE2", nobody, E2E_PWD), 2003);
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, E2E_PWD), 200);
}

TEST(login_token_ok)
{
    uint64_t uid;
    cim_client_t *c1 = e2e_new_user("CIM_GATE1", "ltok", IM_CT_PC_WINDOWS, &uid, NULL);
    char token[512];
    snprintf(token, sizeof(token), "%s", cim_token(c1));
    CHECK(token[0]);
    cim_client_free(c1);

    cim_client_t *c2 = NULL;
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, token, IM_CT_ANDROID, &c2), 200);
    CHECK_EQ_INT(cim_user_id(c2), uid);
    CHECK_EQ_INT(cim_logged_in(c2), 1);
    CHECK_EQ_INT(cim_heartbeat(c2, E2E_CALL_MS), 0);
    cim_client_free(c2);
    /* a token can be used again */
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, token, IM_CT_PC_WINDOWS, NULL), 200);
}

TEST(login_token_bad)
{
    uint64_t a, b;
    cim_client_t *ca = e2e_new_user("CIM_GATE1", "tbada", IM_CT_PC_WINDOWS, &a, NULL);
    cim_client_t *cb = e2e_new_user("CIM_GATE2", "tbadb", IM_CT_PC_WINDOWS, &b, NULL);
    char ta[512], tampered[512];
    snprintf(ta, sizeof(ta), "%s", cim_token(ca));
    cim_client_free(ca);
    cim_client_free(cb);

    /* one character in the middle of a valid token changed */
    snprintf(tampered, sizeof(tampered), "%s", ta);
    size_t i = strlen(tampered) / 2;
    while (tampered[i] && !isalnum((unsigned char) tampered[i]))
        i++;
    CHECK(tampered[i]);
    tampered[i] = tampered[i] == 'x' ? 'y' : 'x';

    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", a, "garbage-token", IM_CT_ANDROID, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", a, "", IM_CT_ANDROID, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", a, tampered, IM_CT_ANDROID, NULL), 2002);
    /* a's token does not log in as b */
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", b, ta, IM_CT_ANDROID, NULL), 2002);
    /* a token-looking string far too long */
    static char huge[4001];
    memset(huge, 'A', sizeof(huge) - 1);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", a, huge, IM_CT_ANDROID, NULL), 2002);
    /* the genuine token still works */
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", a, ta, IM_CT_ANDROID, NULL), 200);
}

/* ------------------------------------------------------------------ HTTP API */

TEST(api_users_needs_key)
{
    char name[40], body[256];
    e2e_uniq(name, sizeof(name), "nokey");
    snprintf(body, sizeof(body), "{\"user_name\":\"%s\",\"nick_name\":\"n\",\"password\":\"%s\"}",
             name, E2E_PWD);
    e2e_http_rsp_t r;
    api("POST", "/api/v1/users", NULL, body, &r);
    check_status(&r, 401);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 3002);
    e2e_http_rsp_free(&r);
    api("POST", "/api/v1/users", "wrong-key", body, &r);
    check_status(&r, 401);
    e2e_http_rsp_free(&r);
    char wrong[512];
    snprintf(wrong, sizeof(wrong), "%sx", e2e_env("CIM_API_KEY"));
    api("POST", "/api/v1/users", wrong, body, &r);
    check_status(&r, 401);
    e2e_http_rsp_free(&r);
    api("GET", "/api/v1/users/1/token", NULL, NULL, &r);
    check_status(&r, 401);
    e2e_http_rsp_free(&r);
    /* nothing was created */
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, E2E_PWD), 2003);
}

TEST(api_users_create)
{
    char name[40], token[512];
    e2e_uniq(name, sizeof(name), "apiu");
    uint64_t uid = api_create_user(name, token, sizeof(token));
    /* the returned token logs in, and so does the password */
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, token, IM_CT_WEB, NULL), 200);
    cim_client_t *c = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_PC_WINDOWS);
    CHECK_EQ_INT(cim_user_id(c), uid);
    cim_client_free(c);

    /* without a user name: the server picks the id, the token works */
    e2e_http_rsp_t r;
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), "{\"nick_name\":\"anonymous\"}", &r);
    check_status(&r, 200);
    long long uid2 = e2e_json_int(&r, "user_id", 0);
    const char *t2 = e2e_json_str(&r, "token");
    CHECK(uid2 > 0 && (uint64_t) uid2 != uid);
    CHECK(t2 && *t2);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", (uint64_t) uid2, t2, IM_CT_WEB, NULL), 200);
    e2e_http_rsp_free(&r);

    /* an existing user name through the API: 409 / 9000 */
    char body[256];
    snprintf(body, sizeof(body),
             "{\"user_name\":\"%s\",\"nick_name\":\"again\",\"password\":\"%s\"}", name, E2E_PWD);
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r);
    check_status(&r, 409);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 9000);
    e2e_http_rsp_free(&r);
}

TEST(api_users_import_with_id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* an id far above what the allocator hands out in a test database, unique per run */
    uint64_t id =
        4000000000000000ULL +
        ((uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000) % 1000000000000ULL * 1000 +
        (uint64_t) getpid() % 1000;
    char name[40], other[40], body[384];
    e2e_uniq(name, sizeof(name), "imp");
    e2e_uniq(other, sizeof(other), "imp2");
    snprintf(body, sizeof(body),
             "{\"user_id\":%" PRIu64 ",\"user_name\":\"%s\",\"nick_name\":\"Imported\","
             "\"avatar_url\":\"http://x/a.png\",\"password\":\"%s\"}",
             id, name, E2E_PWD);
    e2e_http_rsp_t r;
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r);
    check_status(&r, 200);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), id);
    const char *tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", id, tok, IM_CT_IOS, NULL), 200);
    e2e_http_rsp_free(&r);
    cim_client_t *c = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_PC_WINDOWS);
    CHECK_EQ_INT(cim_user_id(c), id);
    cim_client_free(c);

    /* the same user_id with another name: 409 / 9000 */
    snprintf(body, sizeof(body),
             "{\"user_id\":%" PRIu64 ",\"user_name\":\"%s\",\"nick_name\":\"x\"}", id, other);
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r);
    check_status(&r, 409);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 9000);
    e2e_http_rsp_free(&r);
    /* the same user_name with another id: 409 / 9000 */
    snprintf(body, sizeof(body),
             "{\"user_id\":%" PRIu64 ",\"user_name\":\"%s\",\"nick_name\":\"x\"}", id + 1, name);
    api("POST", "/api/v1/users", e2e_env("CIM_API_KEY"), body, &r);
    check_status(&r, 409);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 9000);
    e2e_http_rsp_free(&r);
    /* the refused other name was not created */
    CHECK_EQ_INT(register_code("CIM_GATE1", other, E2E_PWD), 200);
}

TEST(api_token_get)
{
    uint64_t uid;
    cim_client_t *c = e2e_new_user("CIM_GATE1", "tget", IM_CT_PC_WINDOWS, &uid, NULL);
    cim_client_free(c);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/token", uid);
    e2e_http_rsp_t r;
    api("GET", path, e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 200);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), uid);
    CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 0);
    const char *tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, tok, IM_CT_MAC_OS, NULL), 200);
    e2e_http_rsp_free(&r);
    /* the second logic answers the same */
    CHECK_EQ_INT(e2e_http(e2e_env("CIM_API2"), "GET", path, e2e_env("CIM_API_KEY"), NULL, &r), 0);
    check_status(&r, 200);
    tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, tok, IM_CT_MAC_OS, NULL), 200);
    e2e_http_rsp_free(&r);
}

TEST(api_token_rotate_kicks)
{
    char name[40], t0[512];
    e2e_uniq(name, sizeof(name), "trot");
    uint64_t uid = api_create_user(name, t0, sizeof(t0));
    cim_client_t *old = NULL;
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, t0, IM_CT_PC_WINDOWS, &old), 200);
    cim_client_t *other = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_ANDROID);

    char path[128];
    snprintf(path, sizeof(path), "/api/v1/users/%" PRIu64 "/token", uid);
    e2e_http_rsp_t r;
    api("POST", path, e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 200);
    CHECK_EQ_INT(e2e_json_int(&r, "user_id", 0), uid);
    char t1[512];
    const char *tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    snprintf(t1, sizeof(t1), "%s", tok);
    e2e_http_rsp_free(&r);
    CHECK(strcmp(t0, t1) != 0);

    /* the connection logged in with the old token: 0x010B reason 2, then closed */
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(old, IM_CMD_KICKOUT_NOTIFY, 3000, &p), 0);
    CIM__Def__CIMKickoutNotify *k = (CIM__Def__CIMKickoutNotify *) cim_packet_unpack(
        p, &cim__def__cimkickout_notify__descriptor);
    CHECK(k != NULL);
    CHECK_EQ_INT(k->reason, 2);
    CHECK_EQ_INT(k->user_id, uid);
    protobuf_c_message_free_unpacked(&k->base, NULL);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_wait_closed(old, 3000), 1);
    cim_client_free(old);
    /* rotation kicks every connection of the user (DESIGN.md: "kicks the user's connections") */
    CHECK_EQ_INT(cim_next_push(other, IM_CMD_KICKOUT_NOTIFY, 3000, &p), 0);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_wait_closed(other, 3000), 1);
    cim_client_free(other);

    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, t0, IM_CT_PC_WINDOWS, NULL), 2002);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE1", uid, t1, IM_CT_PC_WINDOWS, NULL), 200);
    /* GET now mints tokens of the new version */
    api("GET", path, e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 200);
    tok = e2e_json_str(&r, "token");
    CHECK(tok && *tok);
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, tok, IM_CT_WEB, NULL), 200);
    e2e_http_rsp_free(&r);
    /* the password is unaffected */
    CHECK_EQ_INT(password_login_code("CIM_GATE1", name, E2E_PWD), 200);
}

TEST(api_unknown_user_404)
{
    e2e_http_rsp_t r;
    api("GET", "/api/v1/users/" UNKNOWN_UID "/token", e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 404);
    long long ec = e2e_json_int(&r, "error_code", -1);
    CHECK(ec == 9002 || ec == 3003);
    e2e_http_rsp_free(&r);
    api("POST", "/api/v1/users/" UNKNOWN_UID "/token", e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 404);
    e2e_http_rsp_free(&r);
    api("GET", "/api/v1/no/such/route", e2e_env("CIM_API_KEY"), NULL, &r);
    check_status(&r, 404);
    e2e_http_rsp_free(&r);
}

TEST(api_malformed_json_400)
{
    const char *key = e2e_env("CIM_API_KEY");
    static const char *bodies[] = {
        "{\"user_name\": ",
        "not json at all",
        "[1,2,3]",
        "{\"user_name\": 5, \"nick_name\": \"x\"}",
        "{\"user_name\": \"ok_name\", \"nick_name\": \"x\", \"password\": 7}",
        "{\"user_id\": \"12\", \"nick_name\": \"x\"}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        e2e_http_rsp_t r;
        api("POST", "/api/v1/users", key, bodies[i], &r);
        if (r.status != 400)
            fprintf(stderr, "  body %s\n", bodies[i]);
        check_status(&r, 400);
        CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 3001);
        e2e_http_rsp_free(&r);
    }
    /* invalid name / password through the API: also 400 (the PROTOCOL.md rules) */
    e2e_http_rsp_t r;
    api("POST", "/api/v1/users", key,
        "{\"user_name\":\"a b\",\"nick_name\":\"x\",\"password\":\"pw123456\"}", &r);
    CHECK(r.status == 400);
    e2e_http_rsp_free(&r);
}

TEST(api_healthz_and_metrics)
{
    const char *apis[] = {e2e_env("CIM_API"), e2e_env("CIM_API2")};
    for (int i = 0; i < 2; i++) {
        e2e_http_rsp_t r;
        CHECK_EQ_INT(e2e_http(apis[i], "GET", "/healthz", NULL, NULL, &r), 0);
        check_status(&r, 200);
        e2e_http_rsp_free(&r);
        CHECK_EQ_INT(e2e_http(apis[i], "GET", "/metrics", NULL, NULL, &r), 0);
        check_status(&r, 200);
        CHECK(r.body && strstr(r.body, "cim_") != NULL);
        e2e_http_rsp_free(&r);
    }
    /* the gates' metrics ports, when the harness names them */
    const char *gm[] = {getenv("CIM_GATE1_METRICS"), getenv("CIM_GATE2_METRICS")};
    for (int i = 0; i < 2; i++) {
        if (!gm[i] || !*gm[i])
            continue;
        char addr[128];
        snprintf(addr, sizeof(addr), "%s%s", strchr(gm[i], ':') ? "" : "127.0.0.1:", gm[i]);
        e2e_http_rsp_t r;
        CHECK_EQ_INT(e2e_http(addr, "GET", "/metrics", NULL, NULL, &r), 0);
        check_status(&r, 200);
        CHECK(r.body && strstr(r.body, "cim_") != NULL);
        e2e_http_rsp_free(&r);
        CHECK_EQ_INT(e2e_http(addr, "GET", "/healthz", NULL, NULL, &r), 0);
        check_status(&r, 200);
        e2e_http_rsp_free(&r);
    }
}

/* ------------------------------------------------------------------ sessions */

TEST(logout_then_server_closes)
{
    uint64_t uid;
    cim_client_t *c = e2e_new_user("CIM_GATE2", "lout", IM_CT_PC_WINDOWS, &uid, NULL);
    uint32_t code = 0;
    CHECK_EQ_INT(cim_logout(c, &code), 0);
    CHECK_EQ_INT(code, 200);
    CHECK_EQ_INT(cim_logged_in(c), 0);
    int64_t t0 = e2e_now_ms();
    CHECK_EQ_INT(cim_wait_closed(c, 3000), 1);
    CHECK(e2e_now_ms() - t0 < 2000);
    cim_client_free(c);
}

static void expect_kick(cim_client_t *c, uint64_t uid, uint32_t reason, uint32_t client_type)
{
    cim_packet_t *p = NULL;
    int rc = cim_next_push(c, IM_CMD_KICKOUT_NOTIFY, 3000, &p);
    if (rc != 0)
        fprintf(stderr, "  no 0x010B: %s\n", cim_strerror(rc));
    CHECK_EQ_INT(rc, 0);
    CIM__Def__CIMKickoutNotify *k = (CIM__Def__CIMKickoutNotify *) cim_packet_unpack(
        p, &cim__def__cimkickout_notify__descriptor);
    CHECK(k != NULL);
    CHECK_EQ_INT(k->user_id, uid);
    CHECK_EQ_INT(k->reason, reason);
    CHECK_EQ_INT(k->client_type, client_type);
    protobuf_c_message_free_unpacked(&k->base, NULL);
    cim_packet_free(p);
    CHECK_EQ_INT(cim_wait_closed(c, 3000), 1);
    CHECK_EQ_INT(cim_was_kicked(c), 1);
}

static void expect_alive(cim_client_t *c)
{
    CHECK(cim_is_connected(c));
    CHECK_EQ_INT(cim_heartbeat(c, E2E_CALL_MS), 0);
    cim_packet_t *p = NULL;
    CHECK_EQ_INT(cim_next_push(c, IM_CMD_KICKOUT_NOTIFY, 0, &p), CIM_ETIMEDOUT);
}

TEST(kickout_same_client_type_other_gate)
{
    uint64_t uid;
    char name[40];
    cim_client_t *c1 = e2e_new_user("CIM_GATE1", "kick", IM_CT_PC_WINDOWS, &uid, name);
    cim_client_t *c2 = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_PC_WINDOWS);
    expect_kick(c1, uid, IM_KICK_SAME_TYPE, IM_CT_PC_WINDOWS);
    cim_client_free(c1);
    e2e_sleep_ms(300);
    expect_alive(c2);

    /* again on the same gate, with a token login */
    char token[512];
    snprintf(token, sizeof(token), "%s", cim_token(c2));
    cim_client_t *c3 = NULL;
    CHECK_EQ_INT(e2e_token_login_code("CIM_GATE2", uid, token, IM_CT_PC_WINDOWS, &c3), 200);
    expect_kick(c2, uid, IM_KICK_SAME_TYPE, IM_CT_PC_WINDOWS);
    cim_client_free(c2);
    e2e_sleep_ms(300);
    expect_alive(c3);
    cim_client_free(c3);
}

TEST(two_client_types_online)
{
    uint64_t uid;
    char name[40];
    cim_client_t *android = e2e_new_user("CIM_GATE1", "types", IM_CT_ANDROID, &uid, name);
    cim_client_t *pc = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_PC_WINDOWS);
    cim_client_t *web = e2e_login("CIM_GATE1", name, E2E_PWD, IM_CT_WEB);
    e2e_sleep_ms(500);
    expect_alive(android);
    expect_alive(pc);
    expect_alive(web);
    /* a second ANDROID login kicks only the first ANDROID */
    cim_client_t *android2 = e2e_login("CIM_GATE2", name, E2E_PWD, IM_CT_ANDROID);
    expect_kick(android, uid, IM_KICK_SAME_TYPE, IM_CT_ANDROID);
    e2e_sleep_ms(300);
    expect_alive(pc);
    expect_alive(web);
    expect_alive(android2);
    cim_client_free(android);
    cim_client_free(android2);
    cim_client_free(pc);
    cim_client_free(web);
}

/* ------------------------------------------------------------------ two logics */

#define FAILOVER_USERS 40
#define FAILOVER_MS    15000 /* registration TTL 5 s, plus slack */

static const char *stopped_logic; /* restarted at exit, also after a CHECK failure */

static void restart_stopped_logic(void)
{
    if (!stopped_logic)
        return;
    const char *name = stopped_logic;
    stopped_logic = NULL;
    if (e2e_ctl("start", name) != 0)
        fprintf(stderr, "  ctl.sh start %s failed\n", name);
}

static void restart_on_alarm(int sig)
{
    (void) sig;
    fprintf(stderr, "  timeout: restarting %s\n", stopped_logic ? stopped_logic : "-");
    restart_stopped_logic();
    _exit(1);
}

/* Password login on a fresh connection; 0 when it worked. */
static int try_login(const char *gate_env, const char *name, int call_ms)
{
    cim_client_t *c = cim_client_new();
    CHECK(c != NULL);
    cim_set_call_timeout(c, call_ms);
    int rc = cim_connect_addr(c, e2e_env(gate_env), E2E_CONNECT_MS);
    uint32_t code = 0;
    if (rc == 0)
        rc = cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code);
    cim_client_free(c);
    return rc;
}

/* One login attempt for every user not done yet, all at once (a request routed to a dead
 * logic must not make the others wait): connect and send every 0x0107, then collect the
 * answers until round_ms has passed. Marks and returns the number of users that got 200. */
static int login_round(char (*names)[40], int *done, int n, int round_ms)
{
    cim_client_t *cs[FAILOVER_USERS] = {0};
    uint16_t seqs[FAILOVER_USERS] = {0};
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        cs[i] = cim_client_new();
        CHECK(cs[i] != NULL);
        if (cim_connect_addr(cs[i], e2e_env(i % 2 ? "CIM_GATE2" : "CIM_GATE1"), 1000) != 0)
            continue;
        CIM__Def__CIMAuthReq req = CIM__DEF__CIMAUTH_REQ__INIT;
        req.user_name = names[i];
        req.user_pwd = (char *) E2E_PWD;
        req.client_type = CIM__DEF__CIMCLIENT_TYPE__kCIM_CLIENT_TYPE_PC_WINDOWS;
        seqs[i] = cim_next_seq(cs[i]);
        cim_send(cs[i], IM_CMD_AUTH_REQ, seqs[i], &req.base);
    }
    int64_t deadline = e2e_now_ms() + round_ms;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (!cs[i])
            continue;
        cim_packet_t *p = NULL;
        int64_t t = deadline - e2e_now_ms();
        if (cim_is_connected(cs[i]) &&
            cim_next_push(cs[i], IM_CMD_AUTH_RSP, t > 0 ? (int) t : 0, &p) == 0) {
            CIM__Def__CIMAuthRsp *rsp =
                (CIM__Def__CIMAuthRsp *) cim_packet_unpack(p, &cim__def__cimauth_rsp__descriptor);
            if (p->seq == seqs[i] && rsp && rsp->result_code == 200) {
                done[i] = 1;
                ok++;
            }
            if (rsp)
                protobuf_c_message_free_unpacked(&rsp->base, NULL);
            cim_packet_free(p);
        }
        cim_client_free(cs[i]);
    }
    return ok;
}

/* Users registered and logged in through both gates (each gate picks a logic per user), then
 * ctl.sh ACTION LOGIC (stop: SIGTERM; kill: SIGKILL, the registration must lapse by TTL); once
 * the process is gone, every user must be able to log in again within FAILOVER_MS. The logic
 * is started again at the end. Returns how long the ctl.sh ACTION took, in ms. */
static int failover(const char *logic, const char *action)
{
    static char names[FAILOVER_USERS][40];
    for (int i = 0; i < FAILOVER_USERS; i++) {
        e2e_uniq(names[i], sizeof(names[i]), "fo");
        e2e_register(i % 2 ? "CIM_GATE2" : "CIM_GATE1", names[i], E2E_PWD);
    }
    for (int i = 0; i < FAILOVER_USERS; i++) {
        CHECK_EQ_INT(try_login("CIM_GATE1", names[i], E2E_CALL_MS), 0);
        CHECK_EQ_INT(try_login("CIM_GATE2", names[i], E2E_CALL_MS), 0);
    }

    pid_t pid = e2e_stack_pid(logic);
    CHECK(e2e_pid_alive(pid));
    atexit(restart_stopped_logic);
    signal(SIGALRM, restart_on_alarm);
    stopped_logic = logic;
    int64_t t_stop = e2e_now_ms();
    fflush(stdout);
    fflush(stderr);
    pid_t ctl = fork();
    CHECK(ctl >= 0);
    if (ctl == 0) {
        stopped_logic = NULL; /* the parent restarts it */
        _exit(e2e_ctl(action, logic) == 0 ? 0 : 1);
    }
    while (e2e_pid_alive(pid) && e2e_now_ms() - t_stop < 30000)
        e2e_sleep_ms(20);
    CHECK(!e2e_pid_alive(pid));
    int64_t t_dead = e2e_now_ms();
    int ctl_ms = (int) (t_dead - t_stop);
    fprintf(stderr, "  %s: %s gone after %d ms\n", action, logic, ctl_ms);

    /* every user can log in again within FAILOVER_MS of the logic being gone */
    int done[FAILOVER_USERS] = {0}, left = FAILOVER_USERS;
    while (left > 0 && e2e_now_ms() - t_dead < FAILOVER_MS) {
        left -= login_round(names, done, FAILOVER_USERS, 1500);
        if (left > 0)
            e2e_sleep_ms(250);
    }
    if (left)
        fprintf(stderr, "  %d of %d users cannot log in %d ms after %s went away\n", left,
                FAILOVER_USERS, (int) (e2e_now_ms() - t_dead), logic);
    else
        fprintf(stderr, "  all users logged in again %d ms after %s went away\n",
                (int) (e2e_now_ms() - t_dead), logic);
    CHECK_EQ_INT(left, 0);
    /* once failed over, logins and registrations work at once on both gates */
    for (int i = 0; i < FAILOVER_USERS; i++)
        CHECK_EQ_INT(try_login(i % 2 ? "CIM_GATE1" : "CIM_GATE2", names[i], E2E_CALL_MS), 0);
    char fresh[40];
    e2e_uniq(fresh, sizeof(fresh), "fonew");
    e2e_register("CIM_GATE1", fresh, E2E_PWD);
    CHECK_EQ_INT(try_login("CIM_GATE2", fresh, E2E_CALL_MS), 0);

    int st = 0;
    while (waitpid(ctl, &st, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    restart_stopped_logic();
    /* the logic is back (ctl.sh start waits until it answers) and logins keep working while
     * the gates take it back */
    const char *api_env = strcmp(logic, "logic1") == 0 ? "CIM_API" : "CIM_API2";
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(e2e_env(api_env), "GET", "/healthz", NULL, NULL, &r), 0);
    check_status(&r, 200);
    e2e_http_rsp_free(&r);
    int ok = 0;
    int64_t t1 = e2e_now_ms();
    int all[FAILOVER_USERS] = {0};
    while (ok < FAILOVER_USERS && e2e_now_ms() - t1 < 5000)
        ok += login_round(names, all, FAILOVER_USERS, 3000);
    CHECK_EQ_INT(ok, FAILOVER_USERS);
    return ctl_ms;
}

/* Keep the failover cases last in the file: they stop a logic for a while. */
TEST(two_logics_failover_stop)
{
    int ms = failover("logic1", "stop");
    if (ms > E2E_SIGTERM_MAX_MS)
        fprintf(stderr, "  msg_logic took %d ms to exit after SIGTERM (expected < %d)\n", ms,
                E2E_SIGTERM_MAX_MS);
    CHECK(ms <= E2E_SIGTERM_MAX_MS);
}

TEST(two_logics_failover_kill)
{
    failover("logic2", "kill");
}

TEST_MAIN()
