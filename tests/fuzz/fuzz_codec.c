/* fuzz_codec: im_codec_decode over arbitrary bytes (libFuzzer).
 *
 * Input: byte 0-1 pick max_packet (16 .. 1 MiB + a bit), byte 2 seeds the split points; the
 * rest is the stream. Two checks per input:
 *  - one-shot: decode packets from the whole buffer as the gate's TCP path does (consume,
 *    keep the remainder), checking every documented invariant;
 *  - streaming: feed the same bytes in random-sized pieces into a growing buffer, consuming
 *    packets as they complete; the packets seen (and the final error, if any) must be the same
 *    as in the one-shot decode (the decoder must not depend on how TCP split the bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "im_codec.h"

#define MAX_PKTS 4096

typedef struct {
    uint32_t length;
    uint16_t cmd, seq;
    size_t off; /* offset of the packet in the stream */
} seen_t;

static size_t pick_max(const uint8_t *d)
{
    unsigned v = (unsigned) d[0] << 8 | d[1];
    static const size_t fixed[] = {16, 17, 32, 4096, IM_MAX_PACKET_DEF, IM_MAX_PACKET_S2C};
    if (v < 6 * 256)
        return fixed[v % 6];
    return 16 + (size_t) v * 17; /* 16 .. ~1.1 MB */
}

static void check_packet(const uint8_t *buf, size_t len, size_t max, int rc, const im_packet_t *p,
                         size_t used)
{
    if (rc == IM_OK) {
        if (used < IM_HEADER_LEN || used > len || used > max)
            abort();
        if (p->hdr.length != used || p->hdr.version != IM_VERSION)
            abort();
        if (p->body != buf + IM_HEADER_LEN || p->body_len != used - IM_HEADER_LEN)
            abort();
        if (p->body + p->body_len > buf + len)
            abort();
        /* the header fields are what the bytes say */
        im_header_t h;
        im_codec_read_header(buf, &h);
        if (memcmp(&h, &p->hdr, sizeof(h)) != 0)
            abort();
        /* and a header written back decodes to the same length/cmd/seq */
        uint8_t w[IM_HEADER_LEN];
        im_codec_write_header(w, p->hdr.cmd, p->hdr.seq, p->body_len);
        im_header_t h2;
        im_codec_read_header(w, &h2);
        if (h2.length != p->hdr.length || h2.cmd != p->hdr.cmd || h2.seq != p->hdr.seq)
            abort();
    } else if (rc == IM_AGAIN) {
        if (len >= 16 && used == 0)
            abort(); /* header there: the needed length must be reported */
        if (used && (used <= len || used > max || used < IM_HEADER_LEN))
            abort();
    } else if (rc == IM_ERR_LENGTH || rc == IM_ERR_VERSION) {
        if (len < 4 || used != 0)
            abort();
        if (rc == IM_ERR_VERSION && len < 6)
            abort();
    } else {
        abort(); /* no other code is documented */
    }
    if (!im_codec_strerror(rc))
        abort();
}

/* decode all packets of buf; returns how many, *err the final code (IM_AGAIN or an error) */
static size_t decode_all(const uint8_t *buf, size_t len, size_t max, seen_t *out, int *err)
{
    size_t off = 0, n = 0;
    for (;;) {
        im_packet_t p;
        size_t used = 0;
        int rc = im_codec_decode(buf + off, len - off, max, &p, &used);
        check_packet(buf + off, len - off, max, rc, &p, used);
        if (rc != IM_OK) {
            *err = rc;
            return n;
        }
        if (n < MAX_PKTS)
            out[n] = (seen_t){p.hdr.length, p.hdr.cmd, p.hdr.seq, off};
        n++;
        off += used;
    }
}

static seen_t a[MAX_PKTS], b[MAX_PKTS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max = pick_max(data);
    unsigned rnd = data[2] * 2654435761u + 1;
    const uint8_t *s = data + 3;
    size_t len = size - 3;

    /* one-shot over an exact-size heap copy (ASan sees any read past the end) */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, s, len);
    int err_a = 0;
    size_t na = decode_all(copy, len, max, a, &err_a);

    /* streaming: pieces of 1..64 bytes (or all at once) appended to a buffer */
    uint8_t *buf = malloc(len ? len : 1);
    size_t have = 0, fed = 0, nb = 0, base = 0;
    int err_b = IM_AGAIN;
    while (fed < len && err_b == IM_AGAIN) {
        rnd = rnd * 1103515245u + 12345u;
        size_t piece = (rnd >> 16) % 8 == 0 ? len - fed : 1 + (rnd >> 8) % 64;
        if (piece > len - fed)
            piece = len - fed;
        memcpy(buf + have, s + fed, piece);
        have += piece;
        fed += piece;
        for (;;) {
            /* exact-size window: copy what is buffered to its own allocation */
            uint8_t *win = malloc(have ? have : 1);
            memcpy(win, buf, have);
            im_packet_t p;
            size_t used = 0;
            int rc = im_codec_decode(win, have, max, &p, &used);
            check_packet(win, have, max, rc, &p, used);
            if (rc == IM_OK) {
                if (nb < MAX_PKTS)
                    b[nb] = (seen_t){p.hdr.length, p.hdr.cmd, p.hdr.seq, base};
                nb++;
                memmove(buf, buf + used, have - used);
                have -= used;
                base += used;
                free(win);
                continue;
            }
            free(win);
            err_b = rc;
            break;
        }
    }
    if (len == 0)
        err_b = IM_AGAIN;
    /* same packets, same final verdict */
    if (na != nb || err_a != err_b)
        abort();
    for (size_t i = 0; i < na && i < MAX_PKTS; i++)
        if (a[i].length != b[i].length || a[i].cmd != b[i].cmd || a[i].seq != b[i].seq ||
            a[i].off != b[i].off)
            abort();
    free(buf);
    free(copy);
    return 0;
}
