/*
 * Runs the golden frames of docs/agent-protocol.md (also in
 * test/unit/agent/golden-frames.ts) through the C decoder.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "protocol.h"

static int failures;

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                \
        }                                                              \
    } while (0)

static size_t unhex(const char *hex, uint8_t *out) {
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

struct golden {
    const char *hex;
    uint16_t type;
    uint32_t chan;
    const char *payload_hex;
};

static const struct golden goldens[] = {
    {"48544348000000020003000000000007ee1f94e56869", HP_PING, 7, "6869"},
    {"48544348000000180001000000000000de0ad8800000000100000010000102030405060708090a0b0c0d0e0f", HP_HELLO, 0,
     "0000000100000010000102030405060708090a0b0c0d0e0f"},
    {"485443480000000e001500000102030405397f770000007f00000000000000026e6f", HP_EXIT, 0x01020304u,
     "0000007f00000000000000026e6f"},
    {"485443480000000000130000000000014e548598", HP_STDOUT, 1, ""},
};

static void test_goldens(void) {
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        uint8_t bytes[256], payload[256], enc[HP_HEADER_SIZE];
        size_t n = unhex(goldens[i].hex, bytes), pn = unhex(goldens[i].payload_hex, payload);
        struct frame_hdr h;
        CHECK(frame_hdr_decode(bytes, &h) == HDR_OK);
        CHECK(h.type == goldens[i].type && h.chan == goldens[i].chan && h.flags == 0);
        CHECK(h.len == pn && n == HP_HEADER_SIZE + pn);
        CHECK(memcmp(bytes + HP_HEADER_SIZE, payload, pn) == 0);
        frame_hdr_encode(enc, (uint32_t)pn, goldens[i].type, goldens[i].chan);
        CHECK(memcmp(enc, bytes, HP_HEADER_SIZE) == 0);
    }
}

static void test_payloads(void) {
    uint8_t b[256];
    size_t n = unhex(goldens[1].hex, b);
    struct rd r = {.p = b + HP_HEADER_SIZE, .left = n - HP_HEADER_SIZE};
    uint32_t nonce_len;
    CHECK(rd_u32(&r) == 1);
    const uint8_t *nonce = rd_bytes(&r, &nonce_len);
    CHECK(nonce && nonce_len == 16 && nonce[15] == 0x0f);
    CHECK(rd_done(&r) == 0);

    n = unhex(goldens[2].hex, b);
    r = (struct rd){.p = b + HP_HEADER_SIZE, .left = n - HP_HEADER_SIZE};
    CHECK(rd_u32(&r) == 127 && rd_u32(&r) == 0);
    char *s = rd_str(&r);
    CHECK(s && strcmp(s, "no") == 0);
    free(s);
    CHECK(rd_done(&r) == 0);

    /* Truncated: the string claims 2 bytes, 1 is there. */
    r = (struct rd){.p = b + HP_HEADER_SIZE, .left = n - HP_HEADER_SIZE - 1};
    rd_u32(&r);
    rd_u32(&r);
    CHECK(rd_str(&r) == NULL && r.err);
    /* A length larger than everything left. */
    static const uint8_t lying[] = {0xff, 0xff, 0xff, 0xff, 'a'};
    r = (struct rd){.p = lying, .left = sizeof lying};
    uint32_t ln;
    CHECK(rd_bytes(&r, &ln) == NULL && ln == 0 && rd_done(&r) != 0);
    /* Trailing bytes are an error, embedded NUL in a string too. */
    static const uint8_t nul[] = {0, 0, 0, 2, 'a', 0, 'x'};
    r = (struct rd){.p = nul, .left = sizeof nul};
    CHECK(rd_str(&r) == NULL);
}

static void test_bad_headers(void) {
    uint8_t b[256];
    struct frame_hdr h;
    unhex(goldens[0].hex, b);
    b[12] ^= 1; /* channel bit flip */
    CHECK(frame_hdr_decode(b, &h) == HDR_BAD);
    unhex(goldens[0].hex, b);
    b[0] = 'X';
    CHECK(frame_hdr_decode(b, &h) == HDR_BAD);
    frame_hdr_encode(b, HP_MAX_PAYLOAD + 1, HP_PING, 1);
    CHECK(frame_hdr_decode(b, &h) == HDR_OVERSIZE);
    frame_hdr_encode(b, HP_MAX_PAYLOAD, HP_PING, 1);
    CHECK(frame_hdr_decode(b, &h) == HDR_OK);
    CHECK(crc32_ieee((const uint8_t *)"123456789", 9) == 0xCBF43926u);
}

int main(void) {
    test_goldens();
    test_payloads();
    test_bad_headers();
    if (failures) {
        fprintf(stderr, "frame-test: %d failures\n", failures);
        return 1;
    }
    printf("frame-test: golden frames ok\n");
    return 0;
}
