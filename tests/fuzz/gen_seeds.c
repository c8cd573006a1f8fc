/* gen_seeds: seed corpora for the fuzz targets: gen_seeds OUTDIR writes
 * OUTDIR/fuzz_codec, OUTDIR/fuzz_proto and OUTDIR/fuzz_ws, one valid-looking input per client
 * command (every field of its message set, see fill()), plus a few edge cases. */
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "im_cmd.h"
#include "im_codec.h"
#include "proto/cim.pb-c.h"

#include "fuzz_desc.h"

static void put(const char *dir, const char *target, const char *name, const uint8_t *a,
                size_t alen, const uint8_t *b, size_t blen)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(a, 1, alen, f);
    if (blen)
        fwrite(b, 1, blen, f);
    fclose(f);
}

/* set every field of a message: numbers 1.., strings "abc", bytes, 2 repeated items */
static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, int depth)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    d->message_init(m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *member = (char *) m + f->offset;
        size_t count = 1, esz = 8;
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_MESSAGE:
            esz = sizeof(void *);
            break;
        case PROTOBUF_C_TYPE_BYTES:
            esz = sizeof(ProtobufCBinaryData);
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
            esz = 8;
            break;
        default:
            esz = 4;
        }
        char *base = member;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth > 1)
                continue;
            count = 2;
            base = calloc(count, esz);
            *(size_t *) ((char *) m + f->quantifier_offset) = count;
            *(void **) member = base;
        }
        for (size_t k = 0; k < count; k++) {
            char *slot = base + k * esz;
            switch (f->type) {
            case PROTOBUF_C_TYPE_STRING:
                *(const char **) slot = f->id == 4 && !strcmp(d->short_name, "CIMGetMsgByIdReq")
                                            ? "123456789"
                                            : "abc_user";
                break;
            case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData *bd = (ProtobufCBinaryData *) slot;
                bd->data = (uint8_t *) "hello";
                bd->len = 5;
                break;
            }
            case PROTOBUF_C_TYPE_MESSAGE:
                if (depth < 2)
                    *(ProtobufCMessage **) slot =
                        fill((const ProtobufCMessageDescriptor *) f->descriptor, depth + 1);
                break;
            case PROTOBUF_C_TYPE_BOOL:
                *(protobuf_c_boolean *) slot = 1;
                break;
            default:
                if (esz == 8)
                    *(uint64_t *) slot = 1000 + f->id + k;
                else
                    *(uint32_t *) slot = 1 + (f->id % 3);
            }
        }
    }
    return m;
}

static void ws_frame(uint8_t *out, size_t *olen, int opcode, const uint8_t *p, size_t n)
{
    size_t o = 0;
    out[o++] = (uint8_t) (0x80 | opcode);
    if (n < 126) {
        out[o++] = (uint8_t) (0x80 | n);
    } else {
        out[o++] = 0x80 | 126;
        out[o++] = (uint8_t) (n >> 8);
        out[o++] = (uint8_t) n;
    }
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    memcpy(out + o, key, 4);
    o += 4;
    for (size_t i = 0; i < n; i++)
        out[o + i] = p[i] ^ key[i % 4];
    *olen = o + n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[512];
    const char *targets[] = {"fuzz_codec", "fuzz_proto", "fuzz_ws"};
    mkdir(dir, 0755);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, targets[i]);
        mkdir(path, 0755);
    }
    static uint8_t stream[1 << 16], wsbuf[1 << 17];
    size_t slen = 0, wlen = 0;
    int n = 0;
    for (unsigned c = 0; c <= 0xffff; c++) {
        const im_cmd_info_t *ci = im_cmd_info((uint16_t) c);
        if (!ci || !ci->client_req)
            continue;
        const ProtobufCMessageDescriptor *d = fuzz_desc_for((uint16_t) c);
        if (!d)
            continue;
        ProtobufCMessage *m = fill(d, 0);
        size_t bl = protobuf_c_message_get_packed_size(m);
        uint8_t *pkt = malloc(IM_HEADER_LEN + bl);
        protobuf_c_message_pack(m, pkt + IM_HEADER_LEN);
        im_codec_write_header(pkt, (uint16_t) c, (uint16_t) (n + 1), bl);
        char name[64];
        snprintf(name, sizeof(name), "cmd_%04x", c);
        /* proto: cmd + body */
        uint8_t cmdb[2] = {(uint8_t) (c >> 8), (uint8_t) c};
        put(dir, "fuzz_proto", name, cmdb, 2, pkt + IM_HEADER_LEN, bl);
        /* codec: max 64K + seed + one packet */
        uint8_t pre[3] = {0, 4, (uint8_t) n};
        put(dir, "fuzz_codec", name, pre, 3, pkt, IM_HEADER_LEN + bl);
        /* ws: flags 0 (valid upgrade first) + one masked binary frame */
        uint8_t fr[1024];
        size_t fl;
        ws_frame(fr, &fl, 2, pkt, IM_HEADER_LEN + bl);
        uint8_t wpre[2] = {0, (uint8_t) n};
        put(dir, "fuzz_ws", name, wpre, 2, fr, fl);
        if (slen + IM_HEADER_LEN + bl < sizeof(stream)) {
            memcpy(stream + slen, pkt, IM_HEADER_LEN + bl);
            slen += IM_HEADER_LEN + bl;
        }
        if (wlen + fl < sizeof(wsbuf)) {
            memcpy(wsbuf + wlen, fr, fl);
            wlen += fl;
        }
        free(pkt);
        n++;
    }
    /* several packets in one stream / one read */
    uint8_t pre[3] = {0, 4, 77};
    put(dir, "fuzz_codec", "stream_all", pre, 3, stream, slen);
    uint8_t wpre[2] = {0, 77};
    put(dir, "fuzz_ws", "frames_all", wpre, 2, wsbuf, wlen);
    /* ws: ping, text frame, close frame, fragmented packet, own HTTP heads */
    uint8_t fr[256], all[1024];
    size_t fl, al = 0;
    ws_frame(fr, &fl, 9, (const uint8_t *) "hi", 2);
    memcpy(all, fr, fl);
    al = fl;
    ws_frame(fr, &fl, 1, (const uint8_t *) "text", 4);
    put(dir, "fuzz_ws", "text", wpre, 2, fr, fl);
    uint8_t hb[IM_HEADER_LEN];
    im_codec_write_header(hb, IM_CMD_HEARTBEAT, 9, 0);
    /* a heartbeat split in two fragments: binary (FIN=0) + continuation (FIN=1) */
    ws_frame(fr, &fl, 2, hb, 8);
    fr[0] &= 0x7f;
    memcpy(all + al, fr, fl);
    al += fl;
    ws_frame(fr, &fl, 0, hb + 8, 8);
    memcpy(all + al, fr, fl);
    al += fl;
    uint8_t cl[2] = {0x03, 0xe8};
    ws_frame(fr, &fl, 8, cl, 2);
    memcpy(all + al, fr, fl);
    al += fl;
    put(dir, "fuzz_ws", "ping_frag_close", wpre, 2, all, al);
    static const char head_up[] = "GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, "
                                  "Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
    static const char head_get[] = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char head_post[] = "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    uint8_t own[2] = {1, 5};
    memcpy(all, head_up, sizeof(head_up) - 1);
    ws_frame(fr, &fl, 2, hb, IM_HEADER_LEN);
    memcpy(all + sizeof(head_up) - 1, fr, fl);
    put(dir, "fuzz_ws", "head_upgrade", own, 2, all, sizeof(head_up) - 1 + fl);
    put(dir, "fuzz_ws", "head_get", own, 2, (const uint8_t *) head_get, sizeof(head_get) - 1);
    put(dir, "fuzz_ws", "head_post", own, 2, (const uint8_t *) head_post, sizeof(head_post) - 1);
    /* proto: the gate envelope logic unpacks */
    uint8_t gm[2] = {0xff, 0xff};
    put(dir, "fuzz_proto", "gatemsg_empty", gm, 2, NULL, 0);
    printf("gen_seeds: %d commands\n", n);
    return 0;
}
