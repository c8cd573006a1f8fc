/* End-to-end throughput figure: S senders x N messages, pipelined with up to W in flight per
 * sender, senders and receivers spread over both gates. Prints msgs/s acked and checks every
 * message is acked OK and delivered exactly once. CIM_TEST_LIGHT=1 (or VALGRIND=1) scales it
 * down to 4 x 100. */
#include "../test.h"
#include "e2e_common.h"
#include "e2e_msg_common.h"

#define MAX_PAIRS 20

typedef struct pair_s {
    cim_client_t *snd, *rcv;
    uint64_t to;
    int next;  /* next message index to send */
    int acked; /* acks OK */
    int bad;   /* acks other than OK (resent by the library) */
    int dups;  /* deliveries of an index seen before */
    int got;   /* distinct indexes delivered */
    int misorder;
    int last; /* last index delivered */
    unsigned char *seen;
} pair_t;

static void on_ack(cim_client_t *c, const cim_ack_t *a, void *ud)
{
    pair_t *p = ud;
    (void) c;
    if (a->res_code == CIM_RES_OK)
        p->acked++;
    else
        p->bad++;
}

static void on_push(cim_client_t *c, const cim_packet_t *pkt, void *ud)
{
    pair_t *p = ud;
    (void) c;
    if (pkt->cmd != IM_CMD_MSG_DATA)
        return;
    CIM__Def__CIMMsgData *d =
        (CIM__Def__CIMMsgData *) cim_packet_unpack(pkt, &cim__def__cimmsg_data__descriptor);
    if (!d)
        return;
    char buf[32];
    size_t n = d->msg_data.len < sizeof(buf) - 1 ? d->msg_data.len : sizeof(buf) - 1;
    memcpy(buf, d->msg_data.data, n);
    buf[n] = '\0';
    int idx = atoi(buf);
    if (idx >= 0 && p->seen) {
        if (p->seen[idx]++)
            p->dups++;
        else
            p->got++;
        if (idx < p->last)
            p->misorder++;
        p->last = idx;
    }
    cim__def__cimmsg_data__free_unpacked(d, NULL);
}

TEST(msg_throughput)
{
    int light = msg_light();
    int npairs = light ? 4 : MAX_PAIRS, per = light ? 100 : 500, window = 100;
    static pair_t pairs[MAX_PAIRS];
    for (int i = 0; i < npairs; i++) {
        pair_t *p = &pairs[i];
        p->snd = msg_user_patient(i % 2 ? "CIM_GATE2" : "CIM_GATE1", "tpS", IM_CT_PC_WINDOWS, NULL);
        p->rcv =
            msg_user_patient(i % 2 ? "CIM_GATE1" : "CIM_GATE2", "tpR", IM_CT_PC_WINDOWS, &p->to);
        p->seen = calloc((size_t) per, 1);
        CHECK(p->seen != NULL);
        p->last = -1;
        cim_set_ack_cb(p->snd, on_ack, p);
        cim_set_push_cb(p->rcv, on_push, p);
    }
    int total = npairs * per;
    int64_t t0 = e2e_now_ms(), deadline = t0 + 45000, t_acked = 0;
    int acked = 0, got = 0;
    struct pollfd pfd[2 * MAX_PAIRS];
    while (e2e_now_ms() < deadline) {
        acked = got = 0;
        for (int i = 0; i < npairs; i++) {
            pair_t *p = &pairs[i];
            while (p->next < per && cim_in_flight(p->snd) < (size_t) window) {
                char text[16];
                snprintf(text, sizeof(text), "%d", p->next);
                cim_msg_out_t m = {.to = p->to, .data = text, .len = strlen(text)};
                CHECK_EQ_INT(cim_send_msg_async(p->snd, &m, NULL), 0);
                p->next++;
            }
            if (cim_unacked(p->snd) > cim_in_flight(p->snd))
                cim_resend_unacked(p->snd); /* after ERROR / RATE_LIMITED */
            acked += p->acked;
            got += p->got;
        }
        if (acked == total && !t_acked)
            t_acked = e2e_now_ms();
        if (acked == total && got == total)
            break;
        for (int i = 0; i < npairs; i++) {
            pfd[2 * i] = (struct pollfd){.fd = cim_fd(pairs[i].snd), .events = POLLIN};
            pfd[2 * i + 1] = (struct pollfd){.fd = cim_fd(pairs[i].rcv), .events = POLLIN};
        }
        poll(pfd, (nfds_t) (2 * npairs), 20);
        for (int i = 0; i < npairs; i++) {
            cim_poll(pairs[i].snd, 0);
            cim_poll(pairs[i].rcv, 0);
        }
    }
    int64_t t_end = e2e_now_ms();
    if (!t_acked)
        t_acked = t_end;
    /* a little longer: a late duplicate would show now */
    for (int k = 0; k < 10; k++)
        for (int i = 0; i < npairs; i++)
            cim_poll(pairs[i].rcv, 10);
    int bad = 0, dups = 0, misorder = 0;
    for (int i = 0; i < npairs; i++) {
        bad += pairs[i].bad;
        dups += pairs[i].dups;
        misorder += pairs[i].misorder;
    }
    double secs = (double) (t_acked - t0) / 1000.0;
    printf("  throughput: %d senders x %d messages (window %d, 2 gates): %d acked OK in %.2f s "
           "= %.0f msgs/s acked; all delivered after %.2f s; non-OK acks %d, duplicates %d, "
           "out of order %d\n",
           npairs, per, window, acked, secs, secs > 0 ? acked / secs : 0.0,
           (double) (t_end - t0) / 1000.0, bad, dups, misorder);
    CHECK_EQ_INT(acked, total);
    CHECK_EQ_INT(got, total);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(dups, 0);
    CHECK_EQ_INT(misorder, 0);
    for (int i = 0; i < npairs; i++) {
        CHECK_EQ_INT(cim_unacked(pairs[i].snd), 0);
        cim_client_free(pairs[i].snd);
        cim_client_free(pairs[i].rcv);
        free(pairs[i].seen);
    }
}

TEST_MAIN()
