/* End-to-end: the offline-push webhook (DESIGN.md "Business HTTP API", Guarantee 5).
 *
 * The test stack's logics run without offline_push_url: the first case restarts both with
 * CIM_OFFLINE_PUSH_URL pointing at a receiver inside this test (a thread with a listening
 * socket on a port chosen before the cases fork) and CIM_OFFLINE_PUSH_DELAY=1; the last case
 * restarts them without it, so later tests are unaffected. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

#include "../test.h"
#include "e2e_api_util.h"

#define RX_MAX 256

typedef struct post_s {
    char *auth;
    char *ctype;
    char *body;
    json_t *j;
} post_t;

static struct {
    int port; /* chosen once, before the cases fork */
    int lfd;
    pthread_t th;
    int running;
    pthread_mutex_t mu;
    post_t posts[RX_MAX];
    int n;
} RX = {.mu = PTHREAD_MUTEX_INITIALIZER, .lfd = -1};

__attribute__((constructor)) static void rx_pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *) &sa, &sl) == 0)
        RX.port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
}

static char *header_value(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (!strncasecmp(l + 2, name, nl) && l[2 + nl] == ':') {
            const char *v = l + 3 + nl;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            return strndup(v, e ? (size_t) (e - v) : strlen(v));
        }
    }
    return NULL;
}

static void rx_serve(int fd)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    long clen = -1;
    size_t hend = 0;
    while (buf && len < cap) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t) n;
        buf[len] = '\0';
        if (!hend) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e)
                continue;
            hend = (size_t) (e - buf) + 4;
            char *cl = header_value(buf, "Content-Length");
            clen = cl ? atol(cl) : 0;
            free(cl);
        }
        if (hend && len - hend >= (size_t) clen)
            break;
    }
    if (buf && hend && clen >= 0 && len - hend >= (size_t) clen) {
        buf[hend - 2] = '\0';
        post_t p = {.auth = header_value(buf, "Authorization"),
                    .ctype = header_value(buf, "Content-Type"),
                    .body = strndup(buf + hend, (size_t) clen)};
        p.j = json_loads(p.body, 0, NULL);
        pthread_mutex_lock(&RX.mu);
        if (RX.n < RX_MAX)
            RX.posts[RX.n++] = p;
        pthread_mutex_unlock(&RX.mu);
        const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        (void) !send(fd, ok, strlen(ok), MSG_NOSIGNAL);
    }
    free(buf);
    close(fd);
}

static void *rx_main(void *arg)
{
    (void) arg;
    for (;;) {
        int fd = accept(RX.lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break; /* the listener was shut down */
        }
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        rx_serve(fd);
    }
    return NULL;
}

static void rx_start(void)
{
    CHECK(RX.port > 0);
    RX.lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(RX.lfd >= 0);
    int one = 1;
    setsockopt(RX.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t) RX.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t end = e2e_now_ms() + 10000;
    while (bind(RX.lfd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        CHECK(e2e_now_ms() < end);
        e2e_sleep_ms(100);
    }
    CHECK_EQ_INT(listen(RX.lfd, 64), 0);
    CHECK_EQ_INT(pthread_create(&RX.th, NULL, rx_main, NULL), 0);
    RX.running = 1;
}

/* Not listening any more: connections are refused. */
static void rx_stop(void)
{
    if (!RX.running)
        return;
    shutdown(RX.lfd, SHUT_RDWR);
    close(RX.lfd);
    pthread_join(RX.th, NULL);
    RX.lfd = -1;
    RX.running = 0;
}

static long long jint(json_t *o, const char *k, long long dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long) json_integer_value(v) : dflt;
}

/* Posts for (user, server_msg_id); *first (may be NULL) gets a copy of the first one's JSON. */
static int rx_count(uint64_t uid, uint64_t smid, json_t **first, char **auth)
{
    char id[32];
    snprintf(id, sizeof(id), "%" PRIu64, smid);
    int n = 0;
    pthread_mutex_lock(&RX.mu);
    for (int i = 0; i < RX.n; i++) {
        json_t *j = RX.posts[i].j;
        const char *s = json_string_value(json_object_get(j, "server_msg_id"));
        if (!j || jint(j, "user_id", 0) != (long long) uid || !s || strcmp(s, id))
            continue;
        if (n++ == 0) {
            if (first)
                *first = json_deep_copy(j);
            if (auth)
                *auth = RX.posts[i].auth ? strdup(RX.posts[i].auth) : NULL;
        }
    }
    pthread_mutex_unlock(&RX.mu);
    return n;
}

/* Wait for a post for (uid, smid); keep (may be NULL) goes on heartbeating meanwhile. */
static int rx_wait(uint64_t uid, uint64_t smid, int timeout_ms, cim_client_t *keep)
{
    int64_t end = e2e_now_ms() + timeout_ms;
    while (e2e_now_ms() < end) {
        if (rx_count(uid, smid, NULL, NULL) > 0)
            return 1;
        if (keep)
            cim_poll(keep, 50);
        else
            e2e_sleep_ms(50);
    }
    return rx_count(uid, smid, NULL, NULL) > 0;
}

/* Posts for a user at all (any message). */
static int rx_count_user(uint64_t uid)
{
    int n = 0;
    pthread_mutex_lock(&RX.mu);
    for (int i = 0; i < RX.n; i++)
        if (RX.posts[i].j && jint(RX.posts[i].j, "user_id", 0) == (long long) uid)
            n++;
    pthread_mutex_unlock(&RX.mu);
    return n;
}

static int rx_count_notifications(void)
{
    int n = 0;
    pthread_mutex_lock(&RX.mu);
    for (int i = 0; i < RX.n; i++)
        if (RX.posts[i].j && jint(RX.posts[i].j, "msg_type", 0) == 9)
            n++;
    pthread_mutex_unlock(&RX.mu);
    return n;
}

/* Restart both logics with the environment as it is now; wait until a login works. */
static void restart_logics(void)
{
    CHECK_EQ_INT(e2e_ctl("stop", "logic1"), 0);
    CHECK_EQ_INT(e2e_ctl("stop", "logic2"), 0);
    CHECK_EQ_INT(e2e_ctl("start", "logic1"), 0);
    CHECK_EQ_INT(e2e_ctl("start", "logic2"), 0);
}

/* A logged-in client once the gates reach the restarted logics (retried up to 30 s). */
static cim_client_t *login_retry(const char *gate_env, const char *name)
{
    int64_t end = e2e_now_ms() + 30000;
    for (;;) {
        cim_client_t *c = cim_client_new();
        CHECK(c != NULL);
        cim_set_call_timeout(c, 3000);
        uint32_t code = 0;
        if (cim_connect_addr(c, e2e_env(gate_env), E2E_CONNECT_MS) == 0 &&
            cim_login_password(c, name, E2E_PWD, IM_CT_PC_WINDOWS, &code) == 0) {
            cim_set_call_timeout(c, E2E_CALL_MS);
            cim_set_heartbeat_interval(c, AU_HB_MS);
            return c;
        }
        cim_client_free(c);
        if (e2e_now_ms() > end) {
            fprintf(stderr, "  login %s on %s keeps failing (code %u)\n", name, gate_env, code);
            CHECK(0);
        }
        e2e_sleep_ms(300);
    }
}

/* Wait ms while the clients (NULL ends the list) keep heartbeating and reading. */
static void wait_polling(int ms, cim_client_t *c1, cim_client_t *c2, cim_client_t *c3)
{
    int64_t end = e2e_now_ms() + ms;
    cim_client_t *cs[3] = {c1, c2, c3};
    while (e2e_now_ms() < end) {
        int any = 0;
        for (int i = 0; i < 3; i++)
            if (cs[i]) {
                cim_poll(cs[i], any ? 0 : 50);
                any = 1;
            }
        if (!any)
            e2e_sleep_ms(50);
    }
}

static uint64_t new_user(char *name)
{
    e2e_uniq(name, 40, "wh");
    return e2e_register("CIM_GATE1", name, E2E_PWD);
}

/* both gates reach a logic again */
static void wait_stack_usable(void)
{
    /* the gates learn restarted logics from the registry within a second or two */
    int64_t until = e2e_now_ms() + 20000;
    while (e2e_now_ms() < until) {
        int good = 0;
        const char *gates[2] = {"CIM_GATE1_METRICS", "CIM_GATE2_METRICS"};
        for (int g = 0; g < 2; g++) {
            e2e_http_rsp_t r;
            if (e2e_http(e2e_env(gates[g]), "GET", "/healthz", NULL, NULL, &r) == 0) {
                good += e2e_json_int(&r, "logics", -1) == 2;
                e2e_http_rsp_free(&r);
            }
        }
        if (good == 2)
            break;
        e2e_sleep_ms(100);
    }
    char n[40];
    new_user(n);
    cim_client_free(login_retry("CIM_GATE1", n));
    cim_client_free(login_retry("CIM_GATE2", n));
}

TEST(webhook_setup_logics_with_url)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", RX.port);
    CHECK_EQ_INT(setenv("CIM_OFFLINE_PUSH_URL", url, 1), 0);
    CHECK_EQ_INT(setenv("CIM_OFFLINE_PUSH_DELAY", "1", 1), 0);
    /* and a small business-API rate, for api_rate_limited_429 */
    CHECK_EQ_INT(setenv("CIM_API_RATE", "20", 1), 0);
    CHECK_EQ_INT(setenv("CIM_API_BURST", "40", 1), 0);
    restart_logics();
    /* the logics took the setting (their logs say so) */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "grep -q 'offline pushes to %s after 1 s' '%s/log/logic1.log'", url,
             e2e_env("CIM_TEST_DIR"));
    CHECK_EQ_INT(system(cmd), 0);
    wait_stack_usable();
}

/* the first 64 code points of UTF-8 text */
static void first_cps(const char *s, size_t max_cps, char *out, size_t n)
{
    size_t i = 0, cps = 0;
    while (s[i] && cps < max_cps) {
        unsigned char c = (unsigned char) s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        i += k;
        cps++;
    }
    snprintf(out, n, "%.*s", (int) i, s);
}

TEST(webhook_fires_for_undelivered_not_for_confirmed)
{
    rx_start();
    char an[40], bn[40], cn[40];
    uint64_t a = new_user(an), b = new_user(bn), c = new_user(cn);
    cim_client_t *ca = login_retry("CIM_GATE1", an);
    cim_client_t *cc = login_retry("CIM_GATE2", cn);

    /* b is offline: a long text with multi-byte characters */
    char text[512], u[40];
    e2e_uniq(u, sizeof(u), "m");
    snprintf(text, sizeof(text), "hi %s ", u);
    for (int i = 0; i < 40; i++)
        strcat(text, "\xc3\xa9\xe2\x82\xac"); /* é€ */
    cim_ack_t ack;
    int64_t t_send = e2e_now_ms();
    CHECK_EQ_INT(cim_send_text(ca, b, text, &ack), 0);
    uint64_t smid_b = ack.server_msg_id;

    /* c is online with libcim, which confirms the delivery */
    char text2[128];
    au_text(text2, sizeof(text2), "delivered");
    CHECK_EQ_INT(cim_send_text(ca, c, text2, &ack), 0);
    uint64_t smid_c = ack.server_msg_id;
    CHECK(au_msg(cc, text2, 5000, NULL, NULL));
    cim_poll(cc, 200); /* the confirmation goes out */

    CHECK(rx_wait(b, smid_b, 15000, ca));
    fprintf(stderr, "  webhook for the offline user after %lld ms\n",
            (long long) (e2e_now_ms() - t_send));
    json_t *j = NULL;
    char *auth = NULL;
    CHECK_EQ_INT(rx_count(b, smid_b, &j, &auth), 1);
    char want_auth[600];
    snprintf(want_auth, sizeof(want_auth), "Bearer %s", e2e_env("CIM_API_KEY"));
    CHECK_EQ_STR(auth, want_auth);
    CHECK_EQ_INT(jint(j, "user_id", 0), b);
    CHECK_EQ_INT(jint(j, "from_user_id", 0), a);
    CHECK_EQ_INT(jint(j, "session_type", 0), 1);
    CHECK_EQ_INT(jint(j, "session_id", 0), a);
    CHECK_EQ_INT(jint(j, "msg_type", 0), 1);
    char want[512];
    first_cps(text, 64, want, sizeof(want));
    CHECK_EQ_STR(json_string_value(json_object_get(j, "preview")), want);
    long long created = jint(j, "created", 0);
    CHECK(llabs(created - (long long) time(NULL)) < 120);
    CHECK(json_object_get(j, "attempt") == NULL);
    for (const char *k = "user_id"; k; k = NULL)
        CHECK(json_object_get(j, k) != NULL);
    json_decref(j);
    free(auth);

    /* nothing for the confirmed delivery, nor for the sender's own inbox entries; and the
     * undelivered one exactly once */
    wait_polling(4000, ca, cc, NULL);
    CHECK_EQ_INT(rx_count(c, smid_c, NULL, NULL), 0);
    CHECK_EQ_INT(rx_count_user(a), 0);
    CHECK_EQ_INT(rx_count_user(c), 0);
    CHECK_EQ_INT(rx_count(b, smid_b, NULL, NULL), 1);

    /* once b has confirmed (logged in, synced, confirmed), a later message to b while online is
     * not posted either */
    cim_client_t *cb = login_retry("CIM_GATE2", bn);
    char text3[128];
    au_text(text3, sizeof(text3), "b online now");
    CHECK_EQ_INT(cim_send_text(ca, b, text3, &ack), 0);
    CHECK(au_msg(cb, text3, 5000, NULL, NULL));
    wait_polling(3500, ca, cb, cc);
    CHECK_EQ_INT(rx_count(b, ack.server_msg_id, NULL, NULL), 0);
    CHECK_EQ_INT(rx_count_notifications(), 0);
    cim_client_free(ca);
    cim_client_free(cb);
    cim_client_free(cc);
    rx_stop();
}

TEST(webhook_api_push_and_group)
{
    rx_start();
    char an[40], bn[40], cn[40];
    uint64_t a = new_user(an), b = new_user(bn), c = new_user(cn);
    cim_client_t *ca = login_retry("CIM_GATE1", an);
    cim_client_t *cc = login_retry("CIM_GATE2", cn);

    /* stored API push to offline b: posted, from the system account */
    char body[512], text[128];
    au_text(text, sizeof(text), "api push");
    snprintf(body, sizeof(body), "{\"to_user_ids\":[%" PRIu64 "],\"msg_data\":\"%s\"}", b, text);
    e2e_http_rsp_t r;
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);
    /* transient push to b: never stored, never posted */
    char text_tr[128];
    au_text(text_tr, sizeof(text_tr), "transient");
    snprintf(body, sizeof(body),
             "{\"to_user_ids\":[%" PRIu64 "],\"msg_data\":\"%s\",\"transient\":true}", b, text_tr);
    au_api("POST", "/api/v1/push", body, &r);
    AU_EXPECT(&r, 200, 0);
    e2e_http_rsp_free(&r);

    /* a group of a, b (offline), c (online) */
    snprintf(body, sizeof(body),
             "{\"owner_id\":%" PRIu64 ",\"group_name\":\"wh\",\"member_ids\":[%" PRIu64 ",%" PRIu64
             "]}",
             a, b, c);
    au_api("POST", "/api/v1/groups", body, &r);
    AU_EXPECT(&r, 200, 0);
    uint64_t gid = (uint64_t) e2e_json_int(&r, "group_id", 0);
    e2e_http_rsp_free(&r);
    CHECK(gid > 0);
    char gtext[128];
    au_text(gtext, sizeof(gtext), "group hello");
    cim_msg_out_t m = {
        .to = gid, .session_type = CIM_SESSION_GROUP, .data = gtext, .len = strlen(gtext)};
    cim_ack_t ack;
    CHECK_EQ_INT(cim_send_msg(ca, &m, &ack), 0);
    CHECK(au_msg(cc, gtext, 5000, NULL, NULL));
    cim_poll(cc, 200);

    CHECK(rx_wait(b, ack.server_msg_id, 15000, ca));
    json_t *j = NULL;
    CHECK_EQ_INT(rx_count(b, ack.server_msg_id, &j, NULL), 1);
    CHECK_EQ_INT(jint(j, "session_type", 0), 2);
    CHECK_EQ_INT(jint(j, "session_id", 0), gid);
    CHECK_EQ_INT(jint(j, "from_user_id", 0), a);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "preview")), gtext);
    json_decref(j);

    /* the API push: find it by preview */
    int64_t end = e2e_now_ms() + 15000;
    json_t *pj = NULL;
    int tr_posted = 0;
    while (e2e_now_ms() < end && !pj) {
        pthread_mutex_lock(&RX.mu);
        for (int i = 0; i < RX.n; i++) {
            const char *pv = json_string_value(json_object_get(RX.posts[i].j, "preview"));
            if (pv && !strcmp(pv, text))
                pj = json_deep_copy(RX.posts[i].j);
        }
        pthread_mutex_unlock(&RX.mu);
        if (!pj)
            wait_polling(100, ca, cc, NULL);
    }
    CHECK(pj != NULL);
    CHECK_EQ_INT(jint(pj, "user_id", 0), b);
    CHECK_EQ_INT(jint(pj, "from_user_id", -1), 0);
    CHECK_EQ_INT(jint(pj, "session_type", 0), 1);
    json_decref(pj);

    wait_polling(3000, ca, cc, NULL);
    pthread_mutex_lock(&RX.mu);
    for (int i = 0; i < RX.n; i++) {
        const char *pv = json_string_value(json_object_get(RX.posts[i].j, "preview"));
        if (pv && !strcmp(pv, text_tr))
            tr_posted++;
    }
    pthread_mutex_unlock(&RX.mu);
    CHECK_EQ_INT(tr_posted, 0);
    CHECK_EQ_INT(rx_count_user(c), 0);
    CHECK_EQ_INT(rx_count_user(a), 0);
    CHECK_EQ_INT(rx_count_notifications(), 0); /* group_create NOTIFICATION entries: never */
    cim_client_free(ca);
    cim_client_free(cc);
    rx_stop();
}

TEST(webhook_retried_until_the_receiver_is_up)
{
    /* the receiver is down (nothing listens on its port) */
    char an[40], bn[40];
    uint64_t a = new_user(an), b = new_user(bn);
    (void) a;
    cim_client_t *ca = login_retry("CIM_GATE1", an);
    char text[128];
    au_text(text, sizeof(text), "retry me");
    cim_ack_t ack;
    CHECK_EQ_INT(cim_send_text(ca, b, text, &ack), 0);
    /* first attempt after ~1 s fails (connection refused), then backoff */
    wait_polling(4000, ca, NULL, NULL);
    rx_start();
    CHECK_EQ_INT(RX.n, 0);
    int64_t t0 = e2e_now_ms();
    CHECK(rx_wait(b, ack.server_msg_id, 30000, ca));
    fprintf(stderr, "  posted %lld ms after the receiver came up\n",
            (long long) (e2e_now_ms() - t0));
    json_t *j = NULL;
    CHECK_EQ_INT(rx_count(b, ack.server_msg_id, &j, NULL), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "preview")), text);
    CHECK(json_object_get(j, "attempt") == NULL);
    json_decref(j);
    /* the failed attempts were logged */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "grep -q 'offline push for user %" PRIu64 ": POST failed' '%s/log/'logic*.log", b,
             e2e_env("CIM_TEST_DIR"));
    CHECK_EQ_INT(system(cmd), 0);
    wait_polling(2000, ca, NULL, NULL);
    CHECK_EQ_INT(rx_count(b, ack.server_msg_id, NULL, NULL), 1);
    cim_client_free(ca);
    rx_stop();
}

/* last: the logics go back to the stack's settings */
/* DESIGN.md: 429 -> 3004 per-key request rate (the logics run with 20/s, burst 40 here) */
TEST(api_rate_limited_429)
{
    int ok = 0, limited = 0, other = 0;
    for (int i = 0; i < 120; i++) {
        e2e_http_rsp_t r;
        CHECK_EQ_INT(e2e_http(e2e_env("CIM_API"), "GET", "/api/v1/online/count",
                              e2e_env("CIM_API_KEY"), NULL, &r),
                     0);
        if (r.status == 200) {
            ok++;
        } else if (r.status == 429) {
            limited++;
            CHECK_EQ_INT(e2e_json_int(&r, "error_code", -1), 3004);
        } else {
            other++;
        }
        e2e_http_rsp_free(&r);
    }
    fprintf(stderr, "  120 quick requests: %d answered, %d rate limited\n", ok, limited);
    CHECK(ok >= 40);
    CHECK(limited > 0);
    CHECK_EQ_INT(other, 0);
    e2e_sleep_ms(2500); /* the bucket refills */
    e2e_http_rsp_t r;
    CHECK_EQ_INT(e2e_http(e2e_env("CIM_API"), "GET", "/api/v1/online/count", e2e_env("CIM_API_KEY"),
                          NULL, &r),
                 0);
    CHECK_EQ_INT(r.status, 200);
    e2e_http_rsp_free(&r);
}

TEST(webhook_restore_logics)
{
    unsetenv("CIM_OFFLINE_PUSH_URL");
    unsetenv("CIM_OFFLINE_PUSH_DELAY");
    unsetenv("CIM_API_RATE");
    unsetenv("CIM_API_BURST");
    restart_logics();
    wait_stack_usable();
}

TEST_MAIN()
