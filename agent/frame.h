/* Byte buffers, the frame header, and strict payload readers/writers. */
#ifndef HUTCH_FRAME_H
#define HUTCH_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len, cap;
};

int buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);

uint32_t crc32_ieee(const uint8_t *p, size_t n);

struct frame_hdr {
    uint32_t len;
    uint16_t type;
    uint16_t flags;
    uint32_t chan;
};

enum { HDR_OK = 0, HDR_BAD = -1, HDR_OVERSIZE = -2 };

void frame_hdr_encode(uint8_t out[20], uint32_t len, uint16_t type, uint32_t chan);
/* HDR_BAD when magic or crc do not match, HDR_OVERSIZE when len > max. */
int frame_hdr_decode(const uint8_t in[20], struct frame_hdr *h);

/* Payload writers append big-endian fields; they return 0 or -1 (ENOMEM). */
int put_u8(struct buf *b, uint8_t v);
int put_u32(struct buf *b, uint32_t v);
int put_u64(struct buf *b, uint64_t v);
int put_bytes(struct buf *b, const void *p, size_t n);
int put_str(struct buf *b, const char *s);

/* A reader over one payload: any read past the end sets err and yields 0. */
struct rd {
    const uint8_t *p;
    size_t left;
    int err;
};

uint8_t rd_u8(struct rd *r);
uint32_t rd_u32(struct rd *r);
uint64_t rd_u64(struct rd *r);
/* Points into the payload; no copy. */
const uint8_t *rd_bytes(struct rd *r, uint32_t *n);
/* A malloc'd NUL-terminated copy; rejects embedded NULs. NULL on error. */
char *rd_str(struct rd *r);
/* 0 when every read succeeded and nothing is left over. */
int rd_done(const struct rd *r);

#endif
