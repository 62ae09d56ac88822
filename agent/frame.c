#define _GNU_SOURCE
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int buf_append(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void buf_consume(struct buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void buf_free(struct buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void be32(uint8_t *o, uint32_t v) {
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *i) {
    return (uint32_t)i[0] << 24 | (uint32_t)i[1] << 16 | (uint32_t)i[2] << 8 | i[3];
}

void frame_hdr_encode(uint8_t out[20], uint32_t len, uint16_t type, uint32_t chan) {
    be32(out, HP_MAGIC);
    be32(out + 4, len);
    out[8] = (uint8_t)(type >> 8);
    out[9] = (uint8_t)type;
    out[10] = out[11] = 0;
    be32(out + 12, chan);
    be32(out + 16, crc32_ieee(out, 16));
}

int frame_hdr_decode(const uint8_t in[20], struct frame_hdr *h) {
    if (get32(in) != HP_MAGIC || get32(in + 16) != crc32_ieee(in, 16)) return HDR_BAD;
    h->len = get32(in + 4);
    h->type = (uint16_t)(in[8] << 8 | in[9]);
    h->flags = (uint16_t)(in[10] << 8 | in[11]);
    h->chan = get32(in + 12);
    return h->len > HP_MAX_PAYLOAD ? HDR_OVERSIZE : HDR_OK;
}

int put_u8(struct buf *b, uint8_t v) { return buf_append(b, &v, 1); }

int put_u32(struct buf *b, uint32_t v) {
    uint8_t o[4];
    be32(o, v);
    return buf_append(b, o, 4);
}

int put_u64(struct buf *b, uint64_t v) {
    return put_u32(b, (uint32_t)(v >> 32)) || put_u32(b, (uint32_t)v) ? -1 : 0;
}

int put_bytes(struct buf *b, const void *p, size_t n) {
    return put_u32(b, (uint32_t)n) || buf_append(b, p, n) ? -1 : 0;
}

int put_str(struct buf *b, const char *s) { return put_bytes(b, s, strlen(s)); }

static const uint8_t *rd_take(struct rd *r, size_t n) {
    if (r->err || n > r->left) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t rd_u8(struct rd *r) {
    const uint8_t *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

uint32_t rd_u32(struct rd *r) {
    const uint8_t *p = rd_take(r, 4);
    return p ? get32(p) : 0;
}

uint64_t rd_u64(struct rd *r) {
    uint64_t hi = rd_u32(r);
    return hi << 32 | rd_u32(r);
}

const uint8_t *rd_bytes(struct rd *r, uint32_t *n) {
    *n = rd_u32(r);
    const uint8_t *p = rd_take(r, *n);
    if (!p) *n = 0;
    return p;
}

char *rd_str(struct rd *r) {
    uint32_t n;
    const uint8_t *p = rd_bytes(r, &n);
    if (!p || memchr(p, 0, n)) {
        r->err = 1;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->err = 1;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

int rd_done(const struct rd *r) { return r->err || r->left ? -1 : 0; }
