/* Smoke run of every cim-bench scenario against the test stack: a few seconds each with tiny
 * sizes. Parses the RESULT line, checks lost == 0, dup == 0, acked > 0 (where the scenario
 * sends), and cross-checks with the database: the rows added to im_0..im_3.im_message_send by
 * the bench's users equal the messages it saw acked. CIM_TEST_LIGHT: even smaller.
 * The bench binary: $CIM_BIN/cim-bench (CIM_BIN may also name the binary itself), else
 * ../cim-bench next to this test binary. */
#include <jansson.h>
#include <limits.h>

#include "../test.h"
#include "e2e_common.h"

static int light(void)
{
    return getenv("CIM_TEST_LIGHT") != NULL || getenv("VALGRIND") != NULL;
}

static void bench_path(char *out, size_t n)
{
    const char *b = getenv("CIM_BIN");
    if (b && *b) {
        size_t l = strlen(b);
        if (l >= 9 && strcmp(b + l - 9, "cim-bench") == 0)
            snprintf(out, n, "%s", b);
        else
            snprintf(out, n, "%s/cim-bench", b);
        return;
    }
    char self[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(l > 0);
    self[l] = '\0';
    char *slash = strrchr(self, '/');
    CHECK(slash != NULL);
    *slash = '\0';
    snprintf(out, n, "%s/../cim-bench", self);
}

/* TEXT messages stored with from_id in [lo, hi] over the four shards (not the group_create
 * NOTIFICATION, which is stored with the owner as from_id) */
static long long db_sent_rows(uint64_t lo, uint64_t hi)
{
    char cmd[1024], q[768];
    int n = 0;
    for (int s = 0; s < 4; s++)
        n += snprintf(q + n, sizeof(q) - (size_t) n,
                      "%s(SELECT COUNT(*) FROM im_%d.im_message_send WHERE msg_type = 1 AND "
                      "from_id BETWEEN %" PRIu64 " AND %" PRIu64 ")",
                      s ? "+" : "SELECT ", s, lo, hi);
    snprintf(cmd, sizeof(cmd), "mariadb -S '%s' -uroot -N -e '%s' 2>&1", e2e_env("CIM_MYSQL_SOCK"),
             q);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char line[256] = "";
    char *got = fgets(line, sizeof(line), p);
    int st = pclose(p);
    if (!got || st != 0)
        fprintf(stderr, "  mariadb: %s\n", line);
    CHECK(got != NULL);
    CHECK_EQ_INT(st, 0);
    return atoll(line);
}

/* run cim-bench with args; returns the parsed RESULT object (the test fails without one) */
static json_t *run_bench(const char *args)
{
    char bin[PATH_MAX + 16], cmd[8192];
    bench_path(bin, sizeof(bin));
    CHECK(access(bin, X_OK) == 0);
    const char *gates = e2e_env("CIM_GATE1");
    snprintf(cmd, sizeof(cmd),
             "'%s' %s --gates %s,%s --api %s --api-key '%s' --run-dir '%s' --heartbeat 1 "
             "--drain 5 --login-timeout 30 2>&1",
             bin, args, gates, e2e_env("CIM_GATE2"), e2e_env("CIM_API"), e2e_env("CIM_API_KEY"),
             e2e_env("CIM_TEST_DIR"));
    printf("  $ %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char line[65536];
    json_t *res = NULL;
    while (fgets(line, sizeof(line), p)) {
        if (strncmp(line, "RESULT ", 7) == 0) {
            json_error_t err;
            json_decref(res);
            res = json_loads(line + 7, 0, &err);
            if (!res)
                fprintf(stderr, "  bad RESULT json: %s\n", err.text);
        } else {
            fputs("  | ", stdout);
            fputs(line, stdout);
        }
    }
    int st = pclose(p);
    CHECK(res != NULL);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return res;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        fprintf(stderr, "  RESULT has no %s\n", k);
    CHECK(v != NULL);
    return json_is_integer(v) ? (long long) json_integer_value(v)
                              : (long long) json_number_value(v);
}

/* uid ranges apart from every other test and from bench/run.sh (7x0000000) */
static uint64_t uid_base(int scenario)
{
    return 880000000ULL + (uint64_t) scenario * 100000ULL;
}

/* run a message scenario and check counts against the database */
static json_t *run_checked(int sc, const char *args, int users)
{
    uint64_t lo = uid_base(sc), hi = lo + (uint64_t) users - 1;
    long long before = db_sent_rows(lo, hi);
    char full[1024];
    snprintf(full, sizeof(full), "%s --uid-base %" PRIu64, args, lo);
    json_t *r = run_bench(full);
    long long after = db_sent_rows(lo, hi);
    long long acked = jint(r, "acked");
    printf("  acked %lld, lost %lld, dup %lld, rows added %lld\n", acked, jint(r, "lost"),
           jint(r, "dup"), after - before);
    CHECK(acked > 0);
    CHECK_EQ_INT(jint(r, "lost"), 0);
    CHECK_EQ_INT(jint(r, "dup"), 0);
    CHECK_EQ_INT(jint(r, "conns_ok") >= users, 1);
    CHECK_EQ_INT(after - before, acked);
    return r;
}

TEST(bench_idle)
{
    int n = light() ? 4 : 40;
    char a[256];
    snprintf(a, sizeof(a), "--scenario idle --users %d --duration %d --procs 2 --uid-base %" PRIu64,
             n, light() ? 1 : 2, uid_base(0));
    json_t *r = run_bench(a);
    CHECK_EQ_INT(jint(r, "conns_ok"), n);
    CHECK_EQ_INT(jint(r, "closed"), 0);
    CHECK(json_object_get(r, "bytes_per_conn") != NULL);
    CHECK(json_object_get(r, "gate_rss_after_kb") != NULL);
    json_decref(r);
}

TEST(bench_login)
{
    int n = light() ? 4 : 50;
    char a[256];
    snprintf(a, sizeof(a), "--scenario login --users %d --uid-base %" PRIu64, n, uid_base(1));
    json_t *r = run_bench(a);
    CHECK_EQ_INT(jint(r, "conns_ok"), n);
    CHECK(jint(r, "logins_per_sec") > 0);
    json_decref(r);
}

TEST(bench_p2p_rate)
{
    int n = light() ? 4 : 20;
    char a[256];
    snprintf(a, sizeof(a), "--scenario p2p --users %d --duration %d --rate %d --procs 2", n,
             light() ? 1 : 2, light() ? 20 : 200);
    json_t *r = run_checked(2, a, n);
    CHECK(jint(r, "delivered") == jint(r, "acked"));
    json_decref(r);
}

TEST(bench_p2p_closed)
{
    int n = light() ? 4 : 20;
    char a[256];
    snprintf(a, sizeof(a), "--scenario p2p --users %d --duration %d --rate 0 --inflight 2", n,
             light() ? 1 : 2);
    json_t *r = run_checked(3, a, n);
    json_decref(r);
}

TEST(bench_offline)
{
    int n = light() ? 4 : 20, m = light() ? 20 : 400;
    char a[256];
    snprintf(a, sizeof(a), "--scenario offline --users %d --msgs %d --inflight 4 --duration 20", n,
             m);
    json_t *r = run_checked(4, a, n);
    CHECK_EQ_INT(jint(r, "acked"), m);
    CHECK_EQ_INT(jint(r, "delivered"), m);
    CHECK(jint(r, "sync_pages") > 0);
    json_decref(r);
}

TEST(bench_group)
{
    int n = light() ? 4 : 30;
    char a[256];
    snprintf(a, sizeof(a), "--scenario group --members %d --duration %d --rate %d", n,
             light() ? 1 : 2, light() ? 5 : 20);
    json_t *r = run_checked(5, a, n);
    CHECK_EQ_INT(jint(r, "incomplete"), 0);
    CHECK_EQ_INT(jint(r, "delivered"), jint(r, "acked") * (n - 1));
    json_decref(r);
}

/* connections that never log in: the wrong-token quarter is always closed by the gate, and a
 * real client on the same gates still logs in and chats while they are open */
TEST(bench_hostile)
{
    int n = light() ? 8 : 40;
    char a[256];
    snprintf(a, sizeof(a), "--scenario hostile --users %d --duration 3 --drip-ms 200", n);
    json_t *r = run_bench(a);
    CHECK_EQ_INT(jint(r, "conns_ok") >= n, 1);
    CHECK(jint(r, "closed") >= n / 4);
    CHECK(jint(r, "hostile_bytes") > 0);
    CHECK(json_object_get(r, "hostile_open_end") != NULL);
    json_decref(r);
}

TEST_MAIN()
