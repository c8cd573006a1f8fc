/* im_codec: the 16-byte frame header (PROTOCOL.md section 1). */
#include "im_codec.h"

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t) ((unsigned) p[0] << 8 | (unsigned) p[1]);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

int im_codec_decode(const uint8_t *buf, size_t len, size_t max_packet, im_packet_t *pkt,
                    size_t *consumed)
{
    *consumed = 0;
    if (len < 4)
        return IM_AGAIN;
    uint32_t length = rd32(buf);
    if (length < IM_HEADER_LEN || (size_t) length > max_packet)
        return IM_ERR_LENGTH;
    if (len < 6)
        return IM_AGAIN;
    if (rd16(buf + 4) != IM_VERSION)
        return IM_ERR_VERSION;
    if (len < IM_HEADER_LEN)
        return IM_AGAIN;
    if (len < (size_t) length) {
        *consumed = length;
        return IM_AGAIN;
    }
    im_codec_read_header(buf, &pkt->hdr);
    pkt->body = buf + IM_HEADER_LEN;
    pkt->body_len = (size_t) length - IM_HEADER_LEN;
    *consumed = length;
    return IM_OK;
}

void im_codec_write_header(uint8_t *out, uint16_t cmd, uint16_t seq, size_t body_len)
{
    wr32(out, (uint32_t) (body_len + IM_HEADER_LEN));
    wr16(out + 4, IM_VERSION);
    wr16(out + 6, 0);
    wr16(out + 8, 0);
    wr16(out + 10, cmd);
    wr16(out + 12, seq);
    wr16(out + 14, 0);
}

void im_codec_read_header(const uint8_t *in, im_header_t *hdr)
{
    hdr->length = rd32(in);
    hdr->version = rd16(in + 4);
    hdr->flag = rd16(in + 6);
    hdr->service_id = rd16(in + 8);
    hdr->cmd = rd16(in + 10);
    hdr->seq = rd16(in + 12);
    hdr->reserved = rd16(in + 14);
}

const char *im_codec_strerror(int rc)
{
    switch (rc) {
    case IM_OK:
        return "ok";
    case IM_AGAIN:
        return "need more bytes";
    case IM_ERR:
        return "error";
    case IM_ERR_LENGTH:
        return "bad packet length";
    case IM_ERR_VERSION:
        return "bad protocol version";
    case IM_ERR_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}
