/* Unit tests for common/im_codec. */
#include "../test.h"

#include "im_codec.h"

static size_t make_packet(uint8_t *out, uint16_t cmd, uint16_t seq, const uint8_t *body,
                          size_t body_len)
{
    im_codec_write_header(out, cmd, seq, body_len);
    if (body_len)
        memcpy(out + IM_HEADER_LEN, body, body_len);
    return IM_HEADER_LEN + body_len;
}

TEST(codec_header_roundtrip)
{
    uint8_t h[IM_HEADER_LEN];
    im_codec_write_header(h, 0x0301, 0xBEEF, 0x1234);
    /* big-endian on the wire */
    const uint8_t want[IM_HEADER_LEN] = {0x00, 0x00, 0x12, 0x44, 0x00, 0x01, 0, 0,
                                         0,    0,    0x03, 0x01, 0xBE, 0xEF, 0, 0};
    CHECK(memcmp(h, want, sizeof(want)) == 0);
    im_header_t hdr;
    im_codec_read_header(h, &hdr);
    CHECK_EQ_INT(hdr.length, 0x1234 + 16);
    CHECK_EQ_INT(hdr.version, 1);
    CHECK_EQ_INT(hdr.flag, 0);
    CHECK_EQ_INT(hdr.service_id, 0);
    CHECK_EQ_INT(hdr.cmd, 0x0301);
    CHECK_EQ_INT(hdr.seq, 0xBEEF);
    CHECK_EQ_INT(hdr.reserved, 0);
}

TEST(codec_split_one_byte_at_a_time)
{
    uint8_t body[100], buf[200];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t) (i * 7);
    size_t total = make_packet(buf, 0x0101, 42, body, sizeof(body));
    im_packet_t pkt;
    size_t consumed;
    for (size_t n = 0; n < total; n++) {
        consumed = 999;
        int rc = im_codec_decode(buf, n, IM_MAX_PACKET_DEF, &pkt, &consumed);
        CHECK_EQ_INT(rc, IM_AGAIN);
        CHECK_EQ_INT(consumed, n < IM_HEADER_LEN ? 0 : total);
    }
    CHECK_EQ_INT(im_codec_decode(buf, total, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_OK);
    CHECK_EQ_INT(consumed, total);
    CHECK_EQ_INT(pkt.hdr.cmd, 0x0101);
    CHECK_EQ_INT(pkt.hdr.seq, 42);
    CHECK_EQ_INT(pkt.body_len, sizeof(body));
    CHECK(pkt.body == buf + IM_HEADER_LEN);
    CHECK(memcmp(pkt.body, body, sizeof(body)) == 0);
}

TEST(codec_split_into_copies)
{
    /* feed 1-byte pieces into a growing buffer (as a connection's input buffer would) */
    uint8_t body[33], wire[64], in[64];
    memset(body, 0xAB, sizeof(body));
    size_t total = make_packet(wire, 0x0207, 7, body, sizeof(body));
    size_t have = 0;
    int rc = IM_AGAIN;
    im_packet_t pkt;
    size_t consumed = 0;
    while (have < total) {
        in[have] = wire[have];
        have++;
        rc = im_codec_decode(in, have, IM_MAX_PACKET_DEF, &pkt, &consumed);
        if (have < total)
            CHECK_EQ_INT(rc, IM_AGAIN);
    }
    CHECK_EQ_INT(rc, IM_OK);
    CHECK_EQ_INT(consumed, total);
    CHECK_EQ_INT(pkt.hdr.cmd, 0x0207);
}

TEST(codec_coalesced_packets)
{
    uint8_t buf[1024];
    size_t off = 0;
    const int count = 10;
    for (int i = 0; i < count; i++) {
        uint8_t body[32];
        memset(body, i, sizeof(body));
        off += make_packet(buf + off, (uint16_t) (0x0300 + i), (uint16_t) i, body, (size_t) i * 3);
    }
    /* plus half of another packet */
    uint8_t tail[IM_HEADER_LEN + 20];
    size_t tl = make_packet(tail, 0x0105, 99, (const uint8_t *) "01234567890123456789", 20);
    memcpy(buf + off, tail, tl / 2);
    size_t len = off + tl / 2;

    size_t pos = 0;
    for (int i = 0; i < count; i++) {
        im_packet_t pkt;
        size_t consumed;
        int rc = im_codec_decode(buf + pos, len - pos, IM_MAX_PACKET_DEF, &pkt, &consumed);
        CHECK_EQ_INT(rc, IM_OK);
        CHECK_EQ_INT(pkt.hdr.cmd, 0x0300 + i);
        CHECK_EQ_INT(pkt.hdr.seq, i);
        CHECK_EQ_INT(pkt.body_len, i * 3);
        for (size_t j = 0; j < pkt.body_len; j++)
            CHECK_EQ_INT(pkt.body[j], i);
        pos += consumed;
    }
    CHECK_EQ_INT(pos, off);
    im_packet_t pkt;
    size_t consumed;
    CHECK_EQ_INT(im_codec_decode(buf + pos, len - pos, IM_MAX_PACKET_DEF, &pkt, &consumed),
                 IM_AGAIN);
    CHECK_EQ_INT(consumed, tl);
}

TEST(codec_length_too_small)
{
    for (uint32_t l = 0; l < IM_HEADER_LEN; l++) {
        uint8_t b[IM_HEADER_LEN] = {0};
        b[0] = (uint8_t) (l >> 24);
        b[1] = (uint8_t) (l >> 16);
        b[2] = (uint8_t) (l >> 8);
        b[3] = (uint8_t) l;
        b[5] = 1;
        im_packet_t pkt;
        size_t consumed;
        /* rejected as soon as the 4 length bytes are there */
        for (size_t n = 4; n <= IM_HEADER_LEN; n++)
            CHECK_EQ_INT(im_codec_decode(b, n, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_ERR_LENGTH);
        CHECK_EQ_INT(im_codec_decode(b, 3, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_AGAIN);
    }
}

TEST(codec_length_too_big)
{
    uint8_t b[IM_HEADER_LEN];
    im_packet_t pkt;
    size_t consumed;
    im_codec_write_header(b, 0x0301, 1, IM_MAX_PACKET_DEF - IM_HEADER_LEN + 1);
    CHECK_EQ_INT(im_codec_decode(b, 4, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_ERR_LENGTH);
    CHECK_EQ_INT(im_codec_decode(b, 16, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_ERR_LENGTH);
    /* the same length is fine under a larger limit */
    CHECK_EQ_INT(im_codec_decode(b, 16, IM_MAX_PACKET_S2C, &pkt, &consumed), IM_AGAIN);
    CHECK_EQ_INT(consumed, IM_MAX_PACKET_DEF + 1);
    /* 0xFFFFFFFF */
    memset(b, 0xFF, 4);
    CHECK_EQ_INT(im_codec_decode(b, 4, IM_MAX_PACKET_S2C, &pkt, &consumed), IM_ERR_LENGTH);
}

TEST(codec_bad_version)
{
    uint8_t b[IM_HEADER_LEN];
    im_packet_t pkt;
    size_t consumed;
    const uint16_t bad[] = {0, 2, 0x0100, 0xFFFF};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        im_codec_write_header(b, 0x0101, 1, 0);
        b[4] = (uint8_t) (bad[i] >> 8);
        b[5] = (uint8_t) bad[i];
        CHECK_EQ_INT(im_codec_decode(b, 5, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_AGAIN);
        CHECK_EQ_INT(im_codec_decode(b, 6, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_ERR_VERSION);
        CHECK_EQ_INT(im_codec_decode(b, 16, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_ERR_VERSION);
    }
    CHECK(strcmp(im_codec_strerror(IM_ERR_VERSION), im_codec_strerror(IM_ERR_LENGTH)) != 0);
}

TEST(codec_random_garbage)
{
    uint8_t buf[4096];
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t) (rand_r(&seed) % 64);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t) rand_r(&seed);
        if (round % 3 == 0 && len >= 6) { /* plausible header, random rest */
            buf[0] = 0;
            buf[1] = 0;
            buf[4] = 0;
            buf[5] = 1;
        }
        size_t pos = 0;
        while (pos < len) {
            im_packet_t pkt;
            size_t consumed = 0;
            int rc = im_codec_decode(buf + pos, len - pos, IM_MAX_PACKET_DEF, &pkt, &consumed);
            CHECK(rc == IM_OK || rc == IM_AGAIN || rc == IM_ERR_LENGTH || rc == IM_ERR_VERSION);
            if (rc != IM_OK)
                break;
            CHECK(consumed >= IM_HEADER_LEN && consumed <= len - pos);
            CHECK_EQ_INT(pkt.body_len, consumed - IM_HEADER_LEN);
            pos += consumed;
        }
    }
}

TEST(codec_zero_length_body)
{
    uint8_t b[IM_HEADER_LEN];
    size_t total = make_packet(b, 0x0105, 65535, NULL, 0);
    CHECK_EQ_INT(total, 16);
    im_packet_t pkt;
    size_t consumed;
    CHECK_EQ_INT(im_codec_decode(b, total, IM_MAX_PACKET_DEF, &pkt, &consumed), IM_OK);
    CHECK_EQ_INT(consumed, 16);
    CHECK_EQ_INT(pkt.body_len, 0);
    CHECK_EQ_INT(pkt.hdr.length, 16);
    CHECK_EQ_INT(pkt.hdr.cmd, 0x0105);
    CHECK_EQ_INT(pkt.hdr.seq, 65535);
}

TEST(codec_max_size_body)
{
    size_t body_len = IM_MAX_PACKET_DEF - IM_HEADER_LEN;
    uint8_t *buf = malloc(IM_MAX_PACKET_DEF + 10);
    CHECK(buf != NULL);
    for (size_t i = 0; i < body_len; i++)
        buf[IM_HEADER_LEN + i] = (uint8_t) (i ^ (i >> 8));
    im_codec_write_header(buf, 0x0301, 3, body_len);
    im_packet_t pkt;
    size_t consumed;
    CHECK_EQ_INT(im_codec_decode(buf, IM_MAX_PACKET_DEF - 1, IM_MAX_PACKET_DEF, &pkt, &consumed),
                 IM_AGAIN);
    CHECK_EQ_INT(consumed, IM_MAX_PACKET_DEF);
    CHECK_EQ_INT(im_codec_decode(buf, IM_MAX_PACKET_DEF + 10, IM_MAX_PACKET_DEF, &pkt, &consumed),
                 IM_OK);
    CHECK_EQ_INT(consumed, IM_MAX_PACKET_DEF);
    CHECK_EQ_INT(pkt.body_len, body_len);
    CHECK_EQ_INT(pkt.body[body_len - 1], (uint8_t) ((body_len - 1) ^ ((body_len - 1) >> 8)));
    free(buf);
}

TEST(codec_nonzero_reserved_fields_accepted)
{
    uint8_t b[IM_HEADER_LEN + 2];
    make_packet(b, 0x0101, 9, (const uint8_t *) "xy", 2);
    b[7] = 5;  /* flag */
    b[9] = 6;  /* service_id */
    b[15] = 7; /* reserved */
    im_packet_t pkt;
    size_t consumed;
    CHECK_EQ_INT(im_codec_decode(b, sizeof(b), IM_MAX_PACKET_DEF, &pkt, &consumed), IM_OK);
    CHECK_EQ_INT(pkt.hdr.flag, 5);
    CHECK_EQ_INT(pkt.hdr.service_id, 6);
    CHECK_EQ_INT(pkt.hdr.reserved, 7);
}

TEST_MAIN()
