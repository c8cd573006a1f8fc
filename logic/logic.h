/* msg_logic: internal API shared by the logic's files. One libuv loop owns all state; MySQL
 * work runs on per-shard worker threads (logic_db), argon2id on libuv's thread pool, HTTP on
 * libmicrohttpd's thread (requests are handed to the loop and answered from it). */
#ifndef LOGIC_H
#define LOGIC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "im_id.h"
#include "im_map.h"
#include "im_metrics.h"
#include "im_nn.h"
#include "im_redis.h"
#include "im_token.h"

typedef struct logic_config_s {
    long long logic_id; /* 0 = random */
    char *logic_nn_addr;
    char *logic_http_host;
    long long logic_http_port;
    char *redis_addr;
    char *mysql_shards; /* 4 x host:port/db, comma separated */
    char *mysql_socket; /* Unix socket for the shards whose host is "localhost" */
    char *mysql_user;
    char *mysql_password;
    char *mysql_password_file;
    long long mysql_pool; /* worker threads (= connections) per shard */
    char *api_key;
    char *api_key_file;
    char *token_secret;
    char *token_secret_file;
    long long token_ttl;    /* seconds */
    long long pwhash_level; /* 0 min (tests), 1 interactive, 2 moderate */
    long long registry_ttl;
    long long max_body;            /* HTTP body limit */
    long long api_rate, api_burst; /* business API requests per second (0 = none) */
    long long login_fail_max_user; /* failed password logins per name per minute */
    long long login_fail_max_ip;   /* ... per address per minute */
    char *offline_push_url;
    long long offline_push_delay;
    long long offline_push_group_max;
    char *log_level;
} logic_config_t;

typedef struct logic_gate_s {
    uint64_t id;
    im_nn_out_t *out;
    uint64_t seen_ms;   /* last time we heard of it (registry or a message), mono ms */
    uint64_t listed_ms; /* last time the registry listed it */
} logic_gate_t;

typedef struct logic_s {
    uv_loop_t *loop;
    logic_config_t cfg;
    uint64_t id;
    char owner[96]; /* "host:pid:random": worker-id lease owner */
    im_nn_in_t *nn_in;
    im_redis_t *redis;
    im_map_t gates; /* gate_id -> logic_gate_t */
    uint8_t token_key[IM_TOKEN_KEYBYTES];
    char *api_key;
    char *dummy_hash; /* verified against for unknown users, so timing tells nothing */
    uint8_t nn_prefix[16];
    size_t nn_prefix_len;
    uv_timer_t registry_timer;
    uv_signal_t sigterm, sigint;
    int stopping;
    int worker_id; /* server_msg_id worker (leased in im_0), -1 until leased */
    im_idgen_t idgen;
    struct logic_metrics_s {
        im_metric_t *pkts_in, *batches_in, *logins_ok, *logins_fail, *registers, *logouts, *kicks,
            *db_errors, *redis_errors, *gates, *http_requests, *http_errors, *drop_down,
            *unknown_cmds, *nn_queue;
        im_hist_t *ack_latency, *db_latency;
    } m;
} logic_t;

extern logic_t g_logic;

/* One client request as the gate forwarded it. Handlers copy what they need; replies go to
 * gate_id/conn_id. */
typedef struct logic_req_s {
    uint64_t gate_id;
    uint64_t conn_id;
    uint64_t user_id; /* 0 before login: identity always from here, never from a body */
    uint32_t client_type;
    uint16_t cmd;
    uint16_t seq;
    char peer[48];
} logic_req_t;

/* ---------------------------------------------------------------- logic_main.c: down */
/* Queue one Downstream item to a gate (kind as in internal.proto). 0 ok, -1 unknown gate. */
int logic_down(uint64_t gate_id, int kind, uint64_t conn_id, uint64_t user_id, uint32_t client_type,
               uint16_t cmd, uint16_t seq, const uint8_t *body, size_t len);
/* Reply to a request with a packed message (NULL = empty body). */
void logic_reply(const logic_req_t *r, uint16_t cmd, const void *pbmsg);
/* Reply with the minimal error body for the request's command (im_cmd_error_body). */
void logic_reply_error(const logic_req_t *r, uint32_t code);
logic_gate_t *logic_gate_get(uint64_t gate_id, const char *ep);

/* ---------------------------------------------------------------- logic_db.c */
typedef struct logic_dbc_s logic_dbc_t;
typedef struct logic_job_s logic_job_t;
struct logic_job_s {
    logic_job_t *next;
    void (*work)(logic_job_t *job, logic_dbc_t *c); /* worker thread */
    void (*done)(logic_job_t *job);                 /* loop thread */
    /* optional: jobs queued back to back with the same batch function run together (one
     * transaction), at most LOGIC_DB_BATCH_MAX; it sets every job's rc. work is then unused. */
    void (*batch)(logic_job_t **jobs, int n, logic_dbc_t *c);
    int rc;             /* set by work: 0 or DB_E* */
    uint64_t submit_us; /* set by logic_db_submit (latency metric) */
};

#define LOGIC_DB_BATCH_MAX 1024

enum { DB_OK = 0, DB_ERR = -1, DB_EDUP = -2, DB_ECONN = -3, DB_ELOCK = -4, DB_ENOUSER = -5 };
/* DB_ELOCK: deadlock or lock wait timeout; the transaction was rolled back: run it again.
 * DB_ENOUSER: see db_seq_alloc. */

int logic_db_start(logic_t *l);
void logic_db_stop(void);
/* Run job->work on a worker of `shard` (the worker is picked by key, so jobs with the same key
 * run in order), then job->done on the loop. */
void logic_db_submit(unsigned shard, uint64_t key, logic_job_t *job);
/* The same, at the head of the worker's queue: for the few jobs that must not wait behind a
 * backlog (the worker-id lease renewal; without it message ids pause). */
void logic_db_submit_first(unsigned shard, uint64_t key, logic_job_t *job);
/* Several jobs (linked by ->next, NULL-terminated) for one worker at once: one lock, one
 * wake-up, and the worker finds them together for its batch. */
void logic_db_submit_chain(unsigned shard, uint64_t key, logic_job_t *head);
unsigned logic_db_shards(void);
/* Did the shard's last attempt reach MySQL? (for /healthz) */
int logic_db_shard_ok(unsigned shard);

/* Run one prepared statement (cached per connection by the sql pointer: pass literals).
 * in: one char per parameter, then the values as varargs: 'U' uint64_t, 'u' uint32_t,
 * 'i' int, 's' const char * (NULL = SQL NULL), 'b' const void *, size_t.
 * out: one char per result column, then pointers: 'U' uint64_t *, 'u' uint32_t *, 'i' int *,
 * 's' char *buf, size_t cap (NUL-terminated, truncated), 'b' void *buf, size_t cap, size_t *len.
 * With out columns: fetches the first row; returns 1 (row), 0 (none). Without: returns affected
 * rows. Negative: DB_EDUP (duplicate key), DB_ECONN (connection lost: reset), DB_ERR. */
long db_exec(logic_dbc_t *c, const char *sql, const char *in, const char *out, ...);
/* As db_exec, for every row: the out buffers are filled, then row(ud) copies what it needs.
 * Returns the number of rows, or negative as db_exec. */
long db_query(logic_dbc_t *c, const char *sql, void (*row)(void *ud), void *ud, const char *in,
              const char *out, ...);
/* Multi-row statements: parameters bound by hand, SQL built from a template per row count. */
#define DB_ROWS_MAX 64
#define DB_COLS_MAX 12
typedef struct db_binds_s {
    struct st_mysql_bind *b; /* DB_ROWS_MAX * DB_COLS_MAX, allocated by db_binds_new */
    unsigned long len[DB_ROWS_MAX * DB_COLS_MAX];
    uint64_t v[DB_ROWS_MAX * DB_COLS_MAX];
    int n;
} db_binds_t;
db_binds_t *db_binds_new(void);
void db_binds_free(db_binds_t *p);
void dbb_reset(db_binds_t *p);
void dbb_u64(db_binds_t *p, uint64_t v);
void dbb_str(db_binds_t *p, const void *s, size_t len); /* kept by pointer until the exec */
long db_exec_binds(logic_dbc_t *c, const char *sql, db_binds_t *p, void (*row)(void *ud), void *ud,
                   const char *out, ...);
typedef struct db_tpl_s {
    const char *prefix, *row, *suffix;
    const char *sql[DB_ROWS_MAX + 1];
} db_tpl_t;
/* prefix + n x row (comma separated) + suffix, built once; an sql[n] set in the initializer is
 * used as it is (a better plan for that row count) */
const char *db_tpl_sql(db_tpl_t *t, int n);
/* rows to take next out of `left`: 64, 16, 4 or 1 (few distinct statements to prepare) */
int db_chunk(int left);
/* statement size for k (<= 64) rows of a statement that may repeat its last row (an IN list):
 * 64, 16, 4 or 1 */
int db_pad(int k);
/* the connection's scratch binds, emptied (NULL when out of memory) */
db_binds_t *db_conn_binds(logic_dbc_t *c);
/* Inbox seq counters of n distinct users (sorted ascending), each advanced by add[i], in the
 * caller's transaction (rows locked in id order, so concurrent batches cannot deadlock).
 * end[i] gets the user's new max_seq (its seqs are end-add+1 .. end). One statement per 64
 * users. Returns DB_OK, DB_ENOUSER when users are missing (their end[i] is 0; the statement
 * made rows for them, so the caller rolls back and runs again without them), or a DB_E* code. */
int db_seq_alloc(logic_dbc_t *c, const uint64_t *uids, const uint64_t *add, uint64_t *end,
                 size_t n);

/* START TRANSACTION WITH CONSISTENT SNAPSHOT (reads that must agree) */
int db_begin_snapshot(logic_dbc_t *c);
int db_begin(logic_dbc_t *c);
int db_commit(logic_dbc_t *c);
void db_rollback(logic_dbc_t *c);
uint64_t db_insert_id(logic_dbc_t *c);

/* ---------------------------------------------------------------- logic_user.c */
/* Allocate a user or group id from the im_0 block allocator (call on a shard-0 worker). 0 on
 * failure. */
uint64_t logic_user_alloc_id(logic_dbc_t *c, const char *name);
int logic_user_name_valid(const char *name);
int logic_user_pwd_valid(const char *pwd, size_t len);
void logic_lower(char *dst, const char *src, size_t cap);
/* Strict UTF-8 (no overlong forms, surrogates, code points past U+10FFFF); *cps gets the count
 * of code points. 1 valid, 0 not. */
int logic_utf8_valid(const char *s, size_t *cps);

/* ---------------------------------------------------------------- logic_auth.c */
void logic_auth_register(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_auth_login(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_auth_token(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_auth_logout(const logic_req_t *r, const uint8_t *body, size_t len);
void logic_auth_closed(const logic_req_t *r);
void logic_auth_reroute(const logic_req_t *r);
/* Close every connection of user_id with 0x010B reason (all client types). */
void logic_auth_kick_user(uint64_t user_id, uint32_t reason, void (*done)(void *ud, int kicked),
                          void *ud);
/* Hash a password off the loop; cb gets the argon2id string or NULL. */
void logic_pwhash(const char *pwd, void (*cb)(void *ud, char *hash), void *ud);
int logic_worker_lease_start(logic_t *l);
void logic_worker_lease_stop(void);

/* ---------------------------------------------------------------- logic_http.c */
int logic_http_start(logic_t *l);
void logic_http_stop(void);  /* stop taking requests */
int logic_http_busy(void);   /* requests still being worked on */
void logic_http_close(void); /* after busy() == 0 */

#endif
