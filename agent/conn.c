/*
 * The channel to the host: a virtio console (/dev/hvc0) in the VM, or a
 * unix socket the agent connects to (tests). Frames in, frames out; the
 * parser resynchronizes on the magic after garbage or a stalled frame.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

#define RETRY_MS 100
#define READ_CHUNK (64u * 1024u)

int conn_send(struct agent *a, uint16_t type, uint32_t chan, const void *p, size_t n) {
    uint8_t hdr[HP_HEADER_SIZE];
    if (a->fd < 0) return 0; /* no host: output is discarded */
    frame_hdr_encode(hdr, (uint32_t)n, type, chan);
    if (buf_append(&a->out, hdr, sizeof hdr) || buf_append(&a->out, p, n)) {
        LOG_ERRNO("queue frame");
        return -1;
    }
    return 0;
}

int conn_send_ok(struct agent *a, uint32_t chan) { return conn_send(a, HP_OK, chan, NULL, 0); }

int conn_send_error(struct agent *a, uint32_t chan, int err, const char *msg) {
    struct buf b = {0};
    int rc = -1;
    if (!put_u32(&b, (uint32_t)err) && !put_str(&b, msg)) rc = conn_send(a, HP_ERROR, chan, b.data, b.len);
    buf_free(&b);
    return rc;
}

int conn_congested(const struct agent *a) { return a->out.len >= OUT_HIGH_WATER; }

static int open_socket(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* A console is a tty: raw mode, or the line discipline would eat bytes. */
static int open_device(const char *path) {
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct termios t;
    if (isatty(fd) && tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        if (tcsetattr(fd, TCSANOW, &t) < 0) LOG_ERRNO("tcsetattr");
    }
    return fd;
}

/*
 * The default channel: the virtio serial port named HP_PORT_NAME
 * (`-device virtserialport,name=hutch.agent`), else the console /dev/hvc0.
 * The named port is preferred because QEMU throttles it when the host is
 * slow, while a virtconsole silently drops what the host socket cannot take.
 */
static const char *default_channel(void) {
    static char dev[64];
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], name[64] = "";
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
        fclose(f);
        if (strcmp(name, HP_PORT_NAME) == 0 && strlen(e->d_name) < sizeof dev - 6) {
            snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
            closedir(d);
            return dev;
        }
    }
    if (d) closedir(d);
    return "/dev/hvc0";
}

void conn_open(struct agent *a) {
    static int warned;
    struct stat st;
    int fd = -1;
    const char *path = a->channel_path ? a->channel_path : default_channel();
    a->is_socket = 0;
    if (stat(path, &st) == 0) {
        a->is_socket = S_ISSOCK(st.st_mode);
        fd = a->is_socket ? open_socket(path) : open_device(path);
    }
    if (fd < 0) {
        if (!warned++) log_line("warn", "channel %s: %s (retrying)", path, strerror(errno));
        a->retry_at_ms = now_ms() + RETRY_MS;
        return;
    }
    warned = 0;
    a->fd = fd;
    a->partial_since = 0;
    a->in.len = a->out.len = 0;
    LOG_INFO("channel %s open", path);
}

/*
 * A virtio port reads EOF (and polls HUP) while no host is connected. The
 * device stays open; the agent drops the old host's channels once and then
 * looks again every RETRY_MS until a host is there.
 */
void conn_host_gone(struct agent *a) {
    if (a->have_session) {
        LOG_INFO("host disconnected");
        session_reset(a);
        a->have_session = 0;
    }
    a->in.len = a->out.len = 0;
    a->partial_since = 0;
    a->idle_until_ms = now_ms() + RETRY_MS;
}

void conn_drop(struct agent *a, const char *why) {
    log_line("warn", "channel lost: %s", why);
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
    a->in.len = a->out.len = 0;
    a->partial_since = 0;
    session_reset(a);
    a->have_session = 0;
    a->retry_at_ms = now_ms() + RETRY_MS;
}

static const uint8_t magic[4] = {0x48, 0x54, 0x43, 0x48};

/* Drops bytes until the buffer starts with (a prefix of) the magic. */
static void skip_to_magic(struct agent *a, size_t from) {
    size_t i = from;
    for (; i < a->in.len; i++) {
        size_t k = a->in.len - i < 4 ? a->in.len - i : 4;
        if (memcmp(a->in.data + i, magic, k) == 0) break;
    }
    if (i) log_line("warn", "resync: skipped %zu bytes", i);
    buf_consume(&a->in, i);
}

static void parse_frames(struct agent *a) {
    while (a->fd >= 0 && a->in.len > 0) {
        skip_to_magic(a, 0);
        if (a->in.len < HP_HEADER_SIZE) return;
        struct frame_hdr h;
        int rc = frame_hdr_decode(a->in.data, &h);
        if (rc == HDR_OVERSIZE) {
            log_line("warn", "oversize frame (%u bytes) on channel %u", h.len, h.chan);
            conn_send_error(a, h.chan, EMSGSIZE, "frame too large");
        }
        if (rc != HDR_OK) {
            a->partial_since = 0;
            skip_to_magic(a, 1);
            continue;
        }
        if (a->in.len < HP_HEADER_SIZE + h.len) {
            if (!a->partial_since) a->partial_since = now_ms();
            return;
        }
        a->partial_since = 0;
        dispatch_frame(a, h.type, h.chan, a->in.data + HP_HEADER_SIZE, h.len);
        buf_consume(&a->in, HP_HEADER_SIZE + h.len);
    }
}

void conn_readable(struct agent *a) {
    uint8_t tmp[READ_CHUNK];
    ssize_t n = read(a->fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n == 0 && !a->is_socket) {
        conn_host_gone(a);
        return;
    }
    if (n <= 0) {
        conn_drop(a, n == 0 ? "end of stream" : strerror(errno));
        return;
    }
    if (buf_append(&a->in, tmp, (size_t)n)) {
        conn_drop(a, "out of memory");
        return;
    }
    parse_frames(a);
}

void conn_writable(struct agent *a) {
    while (a->fd >= 0 && a->out.len > 0) {
        ssize_t n = write(a->fd, a->out.data, a->out.len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            conn_drop(a, strerror(errno));
            return;
        }
        buf_consume(&a->out, (size_t)n);
    }
}

/* Offset of a complete, valid HELLO frame after the start, or 0. */
static size_t find_hello(const struct agent *a) {
    for (size_t i = 1; i + HP_HEADER_SIZE <= a->in.len; i++) {
        struct frame_hdr h;
        if (a->in.data[i] != magic[0] || frame_hdr_decode(a->in.data + i, &h) != HDR_OK) continue;
        if (h.type == HP_HELLO && i + HP_HEADER_SIZE + h.len <= a->in.len) return i;
    }
    return 0;
}

/*
 * A host that went away mid-frame leaves an incomplete frame behind (the
 * port gives no disconnect signal). Once a partial frame is older than
 * HP_STALL_MS and a new host's HELLO shows up inside it (a new host keeps
 * repeating HELLO until answered), drop it and resync on that HELLO.
 * A frame whose bytes merely stopped for a while is left alone: a host (or
 * a QEMU) starved of CPU can pause mid-frame for longer than HP_STALL_MS,
 * and dropping the frame then lost file data silently.
 */
void conn_tick(struct agent *a) {
    if (a->fd < 0 || !a->partial_since) return;
    int64_t now = now_ms();
    if (now - a->partial_since < HP_STALL_MS) return;
    size_t hello = find_hello(a);
    if (!hello) return;
    log_line("warn", "abandoned partial frame (%zu bytes buffered): resync", a->in.len);
    a->partial_since = 0;
    skip_to_magic(a, hello ? hello : 1);
    parse_frames(a);
}
