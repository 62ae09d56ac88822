/* Routes one frame from the host to its handler. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "agent.h"
#include "log.h"

void session_reset(struct agent *a) {
    exec_detach_all(a);
    file_drop_all(a);
    tcp_drop_all(a);
    pty_drop_all(a); /* a shell whose host is gone is hung up */
}

/* HELLO: u32 version, bytes nonce. A new nonce means a new host connection:
 * the old one's channels are dropped and its queued output discarded. The
 * answer carries the version both ends speak from now on: the lower of the
 * host's and ours (an older host gets the protocol it knows). */
static void handle_hello(struct agent *a, uint32_t chan, struct rd *r) {
    uint32_t version = rd_u32(r), n;
    const uint8_t *nonce = rd_bytes(r, &n);
    if (rd_done(r) || n != HP_NONCE_SIZE) {
        conn_send_error(a, chan, EPROTO, "bad HELLO");
        return;
    }
    uint32_t agreed = version < HP_VERSION ? version : HP_VERSION;
    if (!a->have_session || memcmp(a->nonce, nonce, HP_NONCE_SIZE) != 0) {
        session_reset(a);
        a->out.len = 0;
        memcpy(a->nonce, nonce, HP_NONCE_SIZE);
        a->have_session = 1;
        a->proto = agreed;
        /* No log line: every restore, resume and fork starts with a HELLO,
         * and a clone's first printk under TCG cost ~15 ms. */
    }
    struct buf b = {0};
    if (!put_u32(&b, a->proto) && !put_bytes(&b, nonce, HP_NONCE_SIZE) && !put_str(&b, AGENT_VERSION))
        conn_send(a, HP_HELLO, chan, b.data, b.len);
    buf_free(&b);
}

void dispatch_frame(struct agent *a, uint16_t type, uint32_t chan, const uint8_t *p, uint32_t n) {
    struct rd r = {.p = p, .left = n};
    if (type == HP_HELLO) {
        handle_hello(a, chan, &r);
        return;
    }
    if (!a->have_session) {
        log_line("warn", "frame type %u before HELLO ignored", type);
        return;
    }
    switch (type) {
    case HP_PING:
        conn_send(a, HP_PONG, chan, p, n);
        break;
    case HP_CONFIGURE:
        handle_configure(a, chan, &r);
        break;
    case HP_EXEC_START:
        exec_start(a, chan, &r);
        break;
    case HP_STDIN:
        if (pty_input(a, chan, p, n) < 0) exec_stdin(a, chan, p, n, 0);
        break;
    case HP_STDIN_EOF:
        if (pty_input(a, chan, p, 0) < 0) exec_stdin(a, chan, p, 0, 1);
        break;
    case HP_KILL:
        if (exec_kill(a, chan) < 0 && file_cancel(a, chan) < 0 && tcp_close(a, chan) < 0 && pty_hangup(a, chan) < 0)
            log_line("warn", "KILL for unknown channel %u", chan);
        break;
    case HP_FILE_WRITE_OPEN:
        file_write_open(a, chan, &r);
        break;
    case HP_FILE_DATA:
        file_write_data(a, chan, p, n);
        break;
    case HP_FILE_END:
        file_write_end(a, chan);
        break;
    case HP_FILE_READ:
        file_read_open(a, chan, &r);
        break;
    case HP_CREDIT: {
        uint32_t bytes = rd_u32(&r);
        if (rd_done(&r) == 0 && tcp_credit(a, chan, bytes) < 0 && pty_credit(a, chan, bytes) < 0 &&
            exec_credit(a, chan, bytes) < 0)
            file_credit(a, chan, bytes);
        break;
    }
    case HP_TCP_CONNECT:
        tcp_connect(a, chan, &r);
        break;
    case HP_TCP_DATA:
        tcp_from_host(a, chan, p, n, 0);
        break;
    case HP_TCP_EOF:
        tcp_from_host(a, chan, p, 0, 1);
        break;
    case HP_TCP_CLOSE:
        tcp_close(a, chan);
        break;
    case HP_PTY_OPEN:
        pty_open(a, chan, &r);
        break;
    case HP_PTY_RESIZE:
        if (pty_resize(a, chan, &r) < 0) log_line("warn", "PTY_RESIZE for unknown channel %u", chan);
        break;
    default:
        conn_send_error(a, chan, ENOSYS, "unsupported frame type");
    }
}
