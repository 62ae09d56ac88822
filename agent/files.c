/*
 * File channels. Writes go to a temp file in the target's directory and are
 * renamed into place at FILE_END; reads stream FILE_DATA within the credit
 * the host granted (HP_READ_WINDOW up front, more with CREDIT).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

struct fileop {
    struct fileop *next;
    uint32_t chan;
    int writing;
    int fd;
    char *path, *tmp;
    uint64_t credit;
};

static struct fileop *find_op(struct agent *a, uint32_t chan) {
    for (struct fileop *f = a->files; f; f = f->next)
        if (f->chan == chan) return f;
    return NULL;
}

static void op_free(struct agent *a, struct fileop *op) {
    for (struct fileop **pp = &a->files; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    if (op->fd >= 0) close(op->fd);
    if (op->tmp) unlink(op->tmp); /* still set only when the write did not finish */
    free(op->path);
    free(op->tmp);
    free(op);
}

static void fail(struct agent *a, struct fileop *op, int err, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
    conn_send_error(a, op->chan, err, msg);
    op_free(a, op);
}

/* mkdir -p with mode 0755; ENOTDIR when a component is not a directory. */
static int mkdir_parents(char *dir) {
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        int rc = mkdir(dir, 0755);
        if (rc < 0 && errno == EEXIST) {
            rc = stat(dir, &st);
            if (rc == 0 && !S_ISDIR(st.st_mode)) {
                errno = ENOTDIR;
                rc = -1;
            }
        }
        *p = c;
        if (rc < 0) return -1;
        if (!c) return 0;
    }
}

static struct fileop *op_new(struct agent *a, uint32_t chan, char *path, int writing) {
    struct fileop *op = calloc(1, sizeof *op);
    if (!op) {
        free(path);
        conn_send_error(a, chan, ENOMEM, "out of memory");
        return NULL;
    }
    op->chan = chan;
    op->path = path;
    op->writing = writing;
    op->fd = -1;
    op->next = a->files;
    a->files = op;
    return op;
}

/* Takes the path off the payload; EINVAL when it is malformed or relative. */
static char *read_path(struct agent *a, uint32_t chan, struct rd *r, uint32_t *mode) {
    char *path = rd_str(r);
    if (mode) *mode = rd_u32(r);
    if (!path || rd_done(r)) {
        conn_send_error(a, chan, EINVAL, "bad file request");
    } else if (path[0] != '/') {
        conn_send_error(a, chan, EINVAL, "path must be absolute");
    } else if (find_op(a, chan)) {
        conn_send_error(a, chan, EEXIST, "channel in use");
    } else {
        return path;
    }
    free(path);
    return NULL;
}

/* FILE_WRITE_OPEN: str path, u32 mode (0: 0644). Replies OK or ERROR. */
void file_write_open(struct agent *a, uint32_t chan, struct rd *r) {
    uint32_t mode;
    char *path = read_path(a, chan, r, &mode);
    if (!path) return;
    struct fileop *op = op_new(a, chan, path, 1);
    if (!op) return;
    struct stat st;
    size_t len = strlen(path);
    char *slash = strrchr(path, '/');
    if (path[len - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        fail(a, op, EISDIR, path);
        return;
    }
    *slash = 0;
    int rc = slash == path ? 0 : mkdir_parents(path);
    *slash = '/';
    if (rc < 0) {
        fail(a, op, errno, "create parent directories");
        return;
    }
    if (asprintf(&op->tmp, "%.*s/.%s.hutch-XXXXXX", (int)(slash - path), path, slash + 1) < 0) {
        op->tmp = NULL;
        fail(a, op, ENOMEM, "temp name");
        return;
    }
    op->fd = mkostemp(op->tmp, O_CLOEXEC);
    if (op->fd < 0) {
        int e = errno;
        free(op->tmp);
        op->tmp = NULL;
        fail(a, op, e, path);
        return;
    }
    if (fchmod(op->fd, mode ? mode & 07777 : 0644) < 0) {
        fail(a, op, errno, "chmod");
        return;
    }
    conn_send_ok(a, chan);
}

void file_write_data(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n) {
    struct fileop *op = find_op(a, chan);
    if (!op || !op->writing) return; /* failed or cancelled: the rest is dropped */
    while (n > 0) {
        ssize_t w = write(op->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            fail(a, op, errno, op->path);
            return;
        }
        p += w;
        n -= (uint32_t)w;
    }
}

void file_write_end(struct agent *a, uint32_t chan) {
    struct fileop *op = find_op(a, chan);
    if (!op || !op->writing) return;
    if (close(op->fd) < 0) {
        op->fd = -1;
        fail(a, op, errno, op->path);
        return;
    }
    op->fd = -1;
    if (rename(op->tmp, op->path) < 0) {
        fail(a, op, errno, op->path);
        return;
    }
    free(op->tmp);
    op->tmp = NULL;
    conn_send_ok(a, chan);
    op_free(a, op);
}

/* FILE_READ: str path. Replies OK (u64 size), FILE_DATA..., FILE_END; or ERROR. */
void file_read_open(struct agent *a, uint32_t chan, struct rd *r) {
    char *path = read_path(a, chan, r, NULL);
    if (!path) return;
    struct fileop *op = op_new(a, chan, path, 0);
    if (!op) return;
    struct stat st;
    op->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (op->fd < 0 || fstat(op->fd, &st) < 0) {
        fail(a, op, errno, path);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(a, op, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, path);
        return;
    }
    struct buf b = {0};
    if (put_u64(&b, (uint64_t)st.st_size) == 0) conn_send(a, HP_OK, chan, b.data, b.len);
    buf_free(&b);
    op->credit = HP_READ_WINDOW;
}

void file_credit(struct agent *a, uint32_t chan, uint32_t bytes) {
    struct fileop *op = find_op(a, chan);
    if (op && !op->writing && op->credit < (1ull << 40)) op->credit += bytes;
}

int file_cancel(struct agent *a, uint32_t chan) {
    struct fileop *op = find_op(a, chan);
    if (!op) return -1;
    op_free(a, op);
    return 0;
}

void file_drop_all(struct agent *a) {
    while (a->files) op_free(a, a->files);
}

/* One chunk per readable file per round, so channels interleave. */
void file_service(struct agent *a, int64_t *timeout_ms) {
    static uint8_t chunk[HP_CHUNK_SIZE];
    for (struct fileop *op = a->files, *next; op; op = next) {
        next = op->next;
        if (op->writing || op->credit == 0 || conn_congested(a)) continue;
        size_t want = op->credit < sizeof chunk ? (size_t)op->credit : sizeof chunk;
        ssize_t n = read(op->fd, chunk, want);
        if (n < 0 && errno == EINTR) {
            *timeout_ms = 0;
        } else if (n < 0) {
            fail(a, op, errno, op->path);
        } else if (n == 0) {
            conn_send(a, HP_FILE_END, op->chan, NULL, 0);
            op_free(a, op);
        } else {
            conn_send(a, HP_FILE_DATA, op->chan, chunk, (size_t)n);
            op->credit -= (uint64_t)n;
            if (op->credit) *timeout_ms = 0;
        }
    }
}
