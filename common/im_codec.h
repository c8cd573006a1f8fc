/* im_codec: the 16-byte frame header of PROTOCOL.md section 1. No I/O, no allocation.
 *
 * Header (big-endian): u32 length (header included), u16 version (1), u16 flag, u16 service_id,
 * u16 command_id, u16 seq_num, u16 reserved. */
#ifndef IM_CODEC_H
#define IM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define IM_HEADER_LEN     16
#define IM_VERSION        1
#define IM_MAX_PACKET_DEF (64 * 1024)   /* client -> server default */
#define IM_MAX_PACKET_S2C (1024 * 1024) /* server -> client hard limit */

/* Return codes shared by common modules. IM_AGAIN is not an error. */
enum {
    IM_OK = 0,
    IM_AGAIN = 1,       /* need more bytes */
    IM_ERR = -1,        /* generic error */
    IM_ERR_LENGTH = -2, /* length < 16 or > max */
    IM_ERR_VERSION = -3,
    IM_ERR_NOMEM = -4,
};

typedef struct im_header_s {
    uint32_t length; /* whole packet, header included */
    uint16_t version;
    uint16_t flag;
    uint16_t service_id;
    uint16_t cmd;
    uint16_t seq;
    uint16_t reserved;
} im_header_t;

typedef struct im_packet_s {
    im_header_t hdr;
    const uint8_t *body; /* points into the caller's input; valid while that input is */
    size_t body_len;     /* hdr.length - 16 */
} im_packet_t;

/* Decode one packet from buf[0..len). On IM_OK fills *pkt (body points into buf) and sets
 * *consumed to the packet's length. IM_AGAIN: not enough bytes yet; if at least the header is
 * there, *consumed is set to the full packet length needed (else 0). Negative: protocol error
 * (IM_ERR_LENGTH when length < 16 or > max_packet, IM_ERR_VERSION when version != 1); the
 * length check happens as soon as 4 bytes are present, before anything is allocated. */
int im_codec_decode(const uint8_t *buf, size_t len, size_t max_packet, im_packet_t *pkt,
                    size_t *consumed);

/* Write a header for a packet with body_len bytes of body into out[0..16). */
void im_codec_write_header(uint8_t *out, uint16_t cmd, uint16_t seq, size_t body_len);

/* Read a big-endian header from 16 bytes (no checks). */
void im_codec_read_header(const uint8_t *in, im_header_t *hdr);

const char *im_codec_strerror(int rc);

#endif
