/*
 * Port relay: TCP_CONNECT opens a connection to 127.0.0.1:port in the guest;
 * TCP_DATA flows both ways within credit windows (HP_TCP_WINDOW each way,
 * topped up with CREDIT), TCP_EOF half-closes, and the agent ends every
 * channel with one TCP_CLOSE (u32 errno, str message; errno 0 = clean).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

enum { ROLE_TCP = 10 };

struct tcpconn {
    struct tcpconn *next;
    uint32_t chan;
    int fd;
    int connecting;
    struct buf to_sock; /* from the host, not yet written to the socket */
    int host_eof, wr_shut, sock_eof;
    uint64_t credit;   /* bytes we may still send to the host */
    uint32_t consumed; /* written to the socket since our last CREDIT */
};

static struct tcpconn *find_tcp(struct agent *a, uint32_t chan) {
    for (struct tcpconn *t = a->tcps; t; t = t->next)
        if (t->chan == chan) return t;
    return NULL;
}

static void tcp_free(struct agent *a, struct tcpconn *t) {
    for (struct tcpconn **pp = &a->tcps; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (t->fd >= 0) close(t->fd);
    buf_free(&t->to_sock);
    free(t);
}

/* Ends the channel: TCP_CLOSE to the host, socket closed. */
static void tcp_finish(struct agent *a, struct tcpconn *t, int err) {
    struct buf b = {0};
    if (!put_u32(&b, (uint32_t)err) && !put_str(&b, err ? strerror(err) : ""))
        conn_send(a, HP_TCP_CLOSE, t->chan, b.data, b.len);
    buf_free(&b);
    tcp_free(a, t);
}

/*
 * The relay moves at most HP_TCP_WINDOW unacknowledged bytes each way, so
 * kernel buffers beyond that on its own socket buy no speed. Left to
 * autotuning on loopback they grow to tcp_rmem/tcp_wmem's maximum (6 and
 * 4 MiB) per connection, and a few parallel downloads then pass the guest's
 * tcp_mem limit (84 MiB in a 1 GiB guest, a quarter of it at 256 MiB). Past
 * that limit the kernel resets orphaned sockets: an HTTP server that had
 * written its whole answer and closed lost the rest of it ("TCP: out of
 * memory -- consider tuning tcp_mem"). Set before connect, so the window
 * scale is chosen for it.
 */
static void small_buffers(int fd) {
    int size = HP_TCP_WINDOW;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0) LOG_ERRNO("SO_RCVBUF");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) < 0) LOG_ERRNO("SO_SNDBUF");
}

/* TCP_CONNECT: u32 port. Answered OK once connected, or ERROR. */
void tcp_connect(struct agent *a, uint32_t chan, struct rd *r) {
    uint32_t port = rd_u32(r);
    if (rd_done(r) || port == 0 || port > 65535) {
        conn_send_error(a, chan, EINVAL, "bad TCP_CONNECT");
        return;
    }
    if (find_tcp(a, chan)) {
        conn_send_error(a, chan, EEXIST, "channel in use");
        return;
    }
    struct tcpconn *t = calloc(1, sizeof *t);
    if (!t) {
        conn_send_error(a, chan, ENOMEM, "out of memory");
        return;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t->chan = chan;
    t->credit = HP_TCP_WINDOW;
    t->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd >= 0) small_buffers(t->fd);
    int rc = t->fd < 0 ? -1 : connect(t->fd, (struct sockaddr *)&sin, sizeof sin);
    if (rc < 0 && errno != EINPROGRESS) {
        char msg[128];
        int e = errno;
        snprintf(msg, sizeof msg, "connect 127.0.0.1:%u: %s", port, strerror(e));
        conn_send_error(a, chan, e, msg);
        if (t->fd >= 0) close(t->fd);
        free(t);
        return;
    }
    t->connecting = rc < 0;
    t->next = a->tcps;
    a->tcps = t;
    if (!t->connecting) conn_send_ok(a, chan);
}

/* -1 when the channel ended (t is freed). */
static int flush_to_sock(struct agent *a, struct tcpconn *t) {
    while (t->to_sock.len > 0) {
        ssize_t n = send(t->fd, t->to_sock.data, t->to_sock.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) {
            tcp_finish(a, t, errno);
            return -1;
        }
        buf_consume(&t->to_sock, (size_t)n);
        t->consumed += (uint32_t)n;
    }
    /* Give credit back in batches, not per write. */
    if (t->consumed >= HP_TCP_WINDOW / 4 || (t->consumed && t->to_sock.len == 0)) {
        struct buf b = {0};
        if (!put_u32(&b, t->consumed)) conn_send(a, HP_CREDIT, t->chan, b.data, b.len);
        buf_free(&b);
        t->consumed = 0;
    }
    if (t->host_eof && !t->wr_shut && t->to_sock.len == 0) {
        shutdown(t->fd, SHUT_WR);
        t->wr_shut = 1;
    }
    if (t->wr_shut && t->sock_eof) {
        tcp_finish(a, t, 0);
        return -1;
    }
    return 0;
}

/* TCP_DATA / TCP_EOF from the host. */
void tcp_from_host(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n, int eof) {
    struct tcpconn *t = find_tcp(a, chan);
    if (!t || t->host_eof) return; /* closed already: late data is dropped */
    if (t->connecting || t->to_sock.len + n > 2 * HP_TCP_WINDOW) {
        tcp_finish(a, t, EPROTO); /* the host ignored its credit */
        return;
    }
    if (n && buf_append(&t->to_sock, p, n)) {
        tcp_finish(a, t, ENOMEM);
        return;
    }
    if (eof) t->host_eof = 1;
    (void)flush_to_sock(a, t);
}

int tcp_credit(struct agent *a, uint32_t chan, uint32_t bytes) {
    struct tcpconn *t = find_tcp(a, chan);
    if (!t) return -1;
    if (t->credit < (1ull << 40)) t->credit += bytes;
    return 0;
}

/* TCP_CLOSE (or KILL) from the host: abort, no answer. */
int tcp_close(struct agent *a, uint32_t chan) {
    struct tcpconn *t = find_tcp(a, chan);
    if (!t) return -1;
    tcp_free(a, t);
    return 0;
}

void tcp_drop_all(struct agent *a) {
    while (a->tcps) tcp_free(a, a->tcps);
}

void tcp_poll_add(struct agent *a, struct pollset *ps) {
    for (struct tcpconn *t = a->tcps; t; t = t->next) {
        short ev = 0;
        if (t->connecting) ev = POLLOUT;
        else {
            if (!t->sock_eof && t->credit > 0 && !conn_congested(a)) ev |= POLLIN;
            if (t->to_sock.len) ev |= POLLOUT;
        }
        if (ev) pollset_add(ps, t->fd, ev, t, ROLE_TCP);
    }
}

int tcp_owns(int role) { return role == ROLE_TCP; }

void tcp_event(struct agent *a, void *owner, short revents) {
    struct tcpconn *t = owner;
    static uint8_t chunk[HP_CHUNK_SIZE];
    if (t->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            char msg[128];
            snprintf(msg, sizeof msg, "connect: %s", strerror(err));
            conn_send_error(a, t->chan, err, msg);
            tcp_free(a, t);
            return;
        }
        t->connecting = 0;
        conn_send_ok(a, t->chan);
        return;
    }
    if ((revents & POLLOUT) && flush_to_sock(a, t) < 0) return;
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && !t->sock_eof && t->credit > 0) {
        size_t want = t->credit < sizeof chunk ? (size_t)t->credit : sizeof chunk;
        ssize_t n = recv(t->fd, chunk, want, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n < 0) {
            tcp_finish(a, t, errno);
        } else if (n == 0) {
            t->sock_eof = 1;
            conn_send(a, HP_TCP_EOF, t->chan, NULL, 0);
            if (t->wr_shut) tcp_finish(a, t, 0);
        } else {
            conn_send(a, HP_TCP_DATA, t->chan, chunk, (size_t)n);
            t->credit -= (uint64_t)n;
        }
    }
}
