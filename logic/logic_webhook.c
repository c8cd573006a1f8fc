/* logic_webhook: the offline-push webhook (DESIGN.md "Business HTTP API", Guarantee 5).
 *
 * When an inbox row is written for a message that may need an offline push, a check is
 * scheduled in Redis (zset cim:wh, score = due time in ms, member = the JSON to post, with an
 * attempt counter). Every logic polls the zset; whoever removes a due member first owns it
 * (ZREM returns 1 to exactly one), looks in MySQL whether any device confirmed the message
 * (im_message_recv.status), and if not POSTs it to offline_push_url from a sender thread,
 * never on the loop. A failed POST goes back into the zset with backoff. Because the schedule
 * lives in Redis, a logic restart loses nothing and repeats nothing; a message claimed by a
 * logic that dies in the instant between claim and POST is the documented gap, as is a Redis
 * wipe (which drops the pending checks). */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_log.h"
#include "im_shard.h"
#include "logic_msg.h"
#include "logic_webhook.h"

#define POLL_MS      250
#define CLAIM_BATCH  64
#define MAX_ATTEMPTS 10
#define BACKOFF_MAX  60000

typedef struct wh_s {
    logic_job_t job;
    struct wh_s *next;
    char *member; /* the zset member as claimed */
    json_t *j;
    uint64_t uid, sid;
    int attempt;
    int delivered;
    int ok; /* POST answered 2xx */
    long status;
} wh_t;

static struct {
    char *url;
    char auth[300];
    int delay_s;
    int group_max;
    uv_timer_t timer;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wh_t *todo, *done;
    int stop;
    int polling;
    int started;
    im_metric_t *scheduled, *posted, *failed, *skipped;
} W;

int logic_webhook_enabled(void)
{
    return W.url != NULL;
}

int logic_webhook_group_max(void)
{
    return W.group_max;
}

static const char *type_label(uint32_t t)
{
    switch (t) {
    case 2:
        return "[file]";
    case 3:
        return "[image]";
    case 4:
        return "[audio]";
    case 5:
        return "[video]";
    case 6:
        return "[location]";
    case 10:
        return "[call]";
    default:
        return NULL;
    }
}

/* the first 64 code points of valid UTF-8 text */
static json_t *preview(uint32_t type, const uint8_t *data, size_t len)
{
    const char *label = type_label(type);
    if (label)
        return json_string(label);
    size_t i = 0, cps = 0;
    while (i < len && cps < 64) {
        unsigned char c = data[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > len)
            break;
        i += n;
        cps++;
    }
    json_t *s = json_stringn((const char *) data, i);
    return s ? s : json_string("");
}

void logic_webhook_schedule(uint64_t user_id, uint64_t from_id, uint32_t session_type,
                            uint64_t session_id, uint64_t server_msg_id, uint32_t msg_type,
                            const uint8_t *data, size_t len, uint32_t created)
{
    if (!W.url)
        return;
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%llu", (unsigned long long) server_msg_id);
    json_t *j = json_object();
    json_object_set_new(j, "user_id", json_integer((json_int_t) user_id));
    json_object_set_new(j, "from_user_id", json_integer((json_int_t) from_id));
    json_object_set_new(j, "session_type", json_integer(session_type));
    json_object_set_new(j, "session_id", json_integer((json_int_t) session_id));
    json_object_set_new(j, "server_msg_id", json_string(idbuf));
    json_object_set_new(j, "msg_type", json_integer(msg_type));
    json_object_set_new(j, "preview", preview(msg_type, data, len));
    json_object_set_new(j, "created", json_integer(created));
    json_object_set_new(j, "attempt", json_integer(0));
    char *member = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!member)
        return;
    uint64_t due = im_now_ms() + (uint64_t) W.delay_s * 1000;
    if (im_redis_cmd(g_logic.redis, NULL, NULL, "ZADD cim:wh %llu %s", (unsigned long long) due,
                     member) == 0)
        im_metric_add(W.scheduled, 1);
    free(member);
}

/* ---------------------------------------------------------------- sender thread */

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void) p;
    (void) ud;
    return sz * n;
}

static void *sender_main(void *arg)
{
    (void) arg;
    CURL *h = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&W.mu);
        while (!W.todo && !W.stop)
            pthread_cond_wait(&W.cv, &W.mu);
        if (!W.todo) {
            pthread_mutex_unlock(&W.mu);
            break;
        }
        wh_t *w = W.todo;
        W.todo = w->next;
        pthread_mutex_unlock(&W.mu);

        json_t *body = json_deep_copy(w->j);
        json_object_del(body, "attempt");
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        struct curl_slist *hd = NULL;
        hd = curl_slist_append(hd, "Content-Type: application/json");
        hd = curl_slist_append(hd, W.auth);
        w->ok = 0;
        if (h && text) {
            curl_easy_reset(h);
            curl_easy_setopt(h, CURLOPT_URL, W.url);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
            if (curl_easy_perform(h) == CURLE_OK) {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &w->status);
                w->ok = w->status >= 200 && w->status < 300;
            }
        }
        curl_slist_free_all(hd);
        free(text);
        pthread_mutex_lock(&W.mu);
        w->next = W.done;
        W.done = w;
        pthread_mutex_unlock(&W.mu);
        uv_async_send(&W.async);
    }
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

static void wh_free(wh_t *w)
{
    free(w->member);
    json_decref(w->j);
    free(w);
}

static void reschedule(wh_t *w)
{
    if (w->attempt + 1 >= MAX_ATTEMPTS) {
        log_error("offline push for user %llu dropped after %d attempts",
                  (unsigned long long) w->uid, MAX_ATTEMPTS);
        im_metric_add(W.failed, 1);
        return;
    }
    json_object_set_new(w->j, "attempt", json_integer(w->attempt + 1));
    char *member = json_dumps(w->j, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t backoff = 1000ULL << (w->attempt < 6 ? w->attempt : 6);
    if (backoff > BACKOFF_MAX)
        backoff = BACKOFF_MAX;
    if (member)
        im_redis_cmd(g_logic.redis, NULL, NULL, "ZADD cim:wh %llu %s",
                     (unsigned long long) (im_now_ms() + backoff), member);
    free(member);
}

static void on_sent(uv_async_t *a)
{
    (void) a;
    pthread_mutex_lock(&W.mu);
    wh_t *w = W.done;
    W.done = NULL;
    pthread_mutex_unlock(&W.mu);
    while (w) {
        wh_t *next = w->next;
        if (w->ok) {
            im_metric_add(W.posted, 1);
            log_debug("offline push for user %llu posted", (unsigned long long) w->uid);
        } else {
            log_warn("offline push for user %llu: POST failed (status %ld), attempt %d",
                     (unsigned long long) w->uid, w->status, w->attempt + 1);
            reschedule(w);
        }
        wh_free(w);
        w = next;
    }
}

/* ---------------------------------------------------------------- claim, check, send */

static void check_work(logic_job_t *job, logic_dbc_t *c)
{
    wh_t *w = (wh_t *) job;
    uint32_t status = 0;
    long r =
        db_exec(c, "SELECT status FROM im_message_recv WHERE user_id = ? AND server_msg_id = ?",
                "UU", "u", w->uid, w->sid, &status);
    job->rc = r < 0 ? (int) r : DB_OK;
    w->delivered = r == 1 && status != 0;
}

static void check_done(logic_job_t *job)
{
    wh_t *w = (wh_t *) job;
    if (job->rc != DB_OK) {
        reschedule(w); /* the shard is away: look again later */
        wh_free(w);
        return;
    }
    if (w->delivered) {
        im_metric_add(W.skipped, 1);
        wh_free(w);
        return;
    }
    pthread_mutex_lock(&W.mu);
    w->next = W.todo;
    W.todo = w;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void claimed(im_redis_t *r, redisReply *reply, void *ud)
{
    wh_t *w = ud;
    (void) r;
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        wh_free(w); /* another logic took it */
        return;
    }
    json_error_t err;
    w->j = json_loads(w->member, 0, &err);
    json_t *uid = json_object_get(w->j, "user_id");
    const char *sid = json_string_value(json_object_get(w->j, "server_msg_id"));
    if (!w->j || !json_is_integer(uid) || !sid) {
        log_warn("offline push: malformed entry dropped");
        wh_free(w);
        return;
    }
    w->uid = (uint64_t) json_integer_value(uid);
    w->sid = strtoull(sid, NULL, 10);
    w->attempt = (int) json_integer_value(json_object_get(w->j, "attempt"));
    w->job.work = check_work;
    w->job.done = check_done;
    logic_db_submit(im_shard_of(w->uid, IM_SHARD_COUNT), w->uid, &w->job);
}

static void due_got(im_redis_t *r, redisReply *reply, void *ud)
{
    (void) r;
    (void) ud;
    W.polling = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        wh_t *w = calloc(1, sizeof(*w));
        if (!w)
            continue;
        w->member = malloc(e->len + 1);
        if (!w->member) {
            free(w);
            continue;
        }
        memcpy(w->member, e->str, e->len);
        w->member[e->len] = 0;
        if (im_redis_cmd(g_logic.redis, claimed, w, "ZREM cim:wh %b", e->str, e->len) != 0)
            wh_free(w);
    }
}

static void poll_tick(uv_timer_t *t)
{
    (void) t;
    if (W.polling || g_logic.stopping)
        return;
    if (im_redis_cmd(g_logic.redis, due_got, NULL, "ZRANGEBYSCORE cim:wh -inf %llu LIMIT 0 %d",
                     (unsigned long long) im_now_ms(), CLAIM_BATCH) == 0)
        W.polling = 1;
}

int logic_webhook_start(logic_t *l)
{
    W.scheduled = im_metrics_counter("cim_logic_offline_push_scheduled_total",
                                     "offline-push checks scheduled");
    W.posted = im_metrics_counter("cim_logic_offline_push_posted_total",
                                  "offline pushes posted to the webhook");
    W.failed = im_metrics_counter("cim_logic_offline_push_dropped_total",
                                  "offline pushes given up after retries");
    W.skipped = im_metrics_counter("cim_logic_offline_push_skipped_total",
                                   "checks that found the message delivered");
    W.delay_s = (int) l->cfg.offline_push_delay;
    W.group_max = (int) l->cfg.offline_push_group_max;
    if (!l->cfg.offline_push_url || !*l->cfg.offline_push_url)
        return 0;
    if (strncmp(l->cfg.offline_push_url, "http://", 7) != 0 &&
        strncmp(l->cfg.offline_push_url, "https://", 8) != 0) {
        log_error("offline_push_url must be http:// or https://");
        return -1;
    }
    W.url = l->cfg.offline_push_url;
    snprintf(W.auth, sizeof(W.auth), "Authorization: Bearer %s", l->api_key);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cv, NULL);
    uv_async_init(l->loop, &W.async, on_sent);
    uv_timer_init(l->loop, &W.timer);
    uv_timer_start(&W.timer, poll_tick, POLL_MS, POLL_MS);
    if (pthread_create(&W.thread, NULL, sender_main, NULL) != 0)
        return -1;
    W.started = 1;
    log_info("offline pushes to %s after %d s", W.url, W.delay_s);
    return 0;
}

void logic_webhook_stop(void)
{
    if (!W.started)
        return;
    pthread_mutex_lock(&W.mu);
    W.stop = 1;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
    on_sent(&W.async);
    /* checks claimed but not sent go back (a restart must not lose them) */
    while (W.todo) {
        wh_t *w = W.todo;
        W.todo = w->next;
        json_object_set_new(w->j, "attempt", json_integer(w->attempt));
        char *member = json_dumps(w->j, JSON_COMPACT | JSON_SORT_KEYS);
        if (member)
            im_redis_cmd(g_logic.redis, NULL, NULL, "ZADD cim:wh %llu %s",
                         (unsigned long long) im_now_ms(), member);
        free(member);
        wh_free(w);
    }
    uv_timer_stop(&W.timer);
    uv_close((uv_handle_t *) &W.timer, NULL);
    uv_close((uv_handle_t *) &W.async, NULL);
    curl_global_cleanup();
    W.started = 0;
}
