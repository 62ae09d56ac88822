/*
 * Commands: fork + setsid + execve with the child's own PATH, non-blocking
 * pipes for stdin/stdout/stderr, EXIT once the main process is gone and its
 * pipes reached EOF (or HP_EXIT_GRACE_MS passed: a background child may
 * hold them open forever). With a host of protocol >= HP_VERSION_EXEC_CREDIT,
 * output goes out within a window (HP_EXEC_WINDOW, topped up by CREDIT):
 * out of credit, the pipes are not read and the command blocks on its write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "spawn.h"

#define STDIN_MAX (64u * 1024u * 1024u)

enum { ROLE_STDOUT = 1, ROLE_STDERR, ROLE_STDIN };

struct exec {
    struct exec *next;
    uint32_t chan;
    int attached; /* belongs to the current host connection */
    pid_t pid;
    int exited, status;
    int64_t exit_ms;
    int in_fd, out_fd, err_fd;
    struct buf stdin_buf;
    int stdin_eof;
    int credited;      /* output within the window the host tops up with CREDIT */
    uint64_t credit;   /* STDOUT+STDERR bytes we may still send */
    int64_t stall_ms;  /* exited and held for credit since then; 0: not held */
};

static struct exec *find_exec(struct agent *a, uint32_t chan) {
    for (struct exec *e = a->execs; e; e = e->next)
        if (e->attached && e->chan == chan) return e;
    return NULL;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int send_exit(struct agent *a, uint32_t chan, int code, int sig, const char *error) {
    struct buf b = {0};
    int rc = -1;
    if (!put_u32(&b, (uint32_t)code) && !put_u32(&b, (uint32_t)sig) && !put_str(&b, error))
        rc = conn_send(a, HP_EXIT, chan, b.data, b.len);
    buf_free(&b);
    return rc;
}

/* Starts the command; on failure answers the channel (EXIT 126/127 or ERROR). */
static int spawn(struct agent *a, struct exec *e, char **argv, struct env_list *env, const char *cwd) {
    struct child c;
    int code = 0;
    char msg[512];
    if (spawn_command(argv, env, cwd, &c, &code, msg, sizeof msg) == 0) {
        e->pid = c.pid;
        e->in_fd = c.in_fd;
        e->out_fd = c.out_fd;
        e->err_fd = c.err_fd;
        return 0;
    }
    if (code) send_exit(a, e->chan, code, 0, msg);
    else conn_send_error(a, e->chan, errno, msg);
    return -1;
}

static void exec_free(struct exec *e) {
    close_fd(&e->in_fd);
    close_fd(&e->out_fd);
    close_fd(&e->err_fd);
    buf_free(&e->stdin_buf);
    free(e);
}

/* EXEC_START: strlist argv, kv env, str cwd (empty: /root or /). */
void exec_start(struct agent *a, uint32_t chan, struct rd *r) {
    struct env_list env = {0};
    char **argv = NULL, *cwd = NULL;
    uint32_t argc = rd_u32(r);
    int ok = !r->err && argc >= 1 && argc <= r->left / 4;
    if (ok) argv = calloc((size_t)argc + 1, sizeof *argv);
    for (uint32_t i = 0; ok && argv && i < argc; i++) ok = (argv[i] = rd_str(r)) != NULL;
    ok = ok && argv && argv[0][0];
    ok = ok && env_defaults(&env) == 0;
    for (size_t i = 0; ok && i < a->envs.n; i++) ok = env_set(&env, a->envs.items[i].key, a->envs.items[i].value) == 0;
    ok = ok && env_read(r, &env) == 0 && (cwd = rd_str(r)) != NULL && rd_done(r) == 0;
    if (!ok) {
        conn_send_error(a, chan, EINVAL, "bad EXEC_START");
    } else if (find_exec(a, chan)) {
        conn_send_error(a, chan, EEXIST, "channel in use");
    } else {
        struct stat st;
        const char *dir = *cwd ? cwd : stat("/root", &st) == 0 && S_ISDIR(st.st_mode) ? "/root" : "/";
        struct exec *e = calloc(1, sizeof *e);
        if (!e) {
            conn_send_error(a, chan, ENOMEM, "out of memory");
        } else {
            e->chan = chan;
            e->attached = 1;
            e->credited = a->proto >= HP_VERSION_EXEC_CREDIT;
            e->credit = HP_EXEC_WINDOW;
            e->in_fd = e->out_fd = e->err_fd = -1;
            if (spawn(a, e, argv, &env, dir) == 0) {
                e->next = a->execs;
                a->execs = e;
            } else {
                exec_free(e);
            }
        }
    }
    env_free(&env);
    free(cwd);
    free_strv(argv);
}

static void flush_stdin(struct exec *e) {
    while (e->in_fd >= 0 && e->stdin_buf.len > 0) {
        ssize_t n = write(e->in_fd, e->stdin_buf.data, e->stdin_buf.len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) { /* EPIPE: the command does not read stdin */
            e->stdin_buf.len = 0;
            close_fd(&e->in_fd);
            return;
        }
        buf_consume(&e->stdin_buf, (size_t)n);
    }
    if (e->stdin_eof && e->stdin_buf.len == 0) close_fd(&e->in_fd);
}

void exec_stdin(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n, int eof) {
    struct exec *e = find_exec(a, chan);
    if (!e) return; /* finished already: late stdin is dropped */
    if (e->in_fd >= 0 && n) {
        if (e->stdin_buf.len + n > STDIN_MAX || buf_append(&e->stdin_buf, p, n)) {
            log_line("warn", "exec %u: stdin buffer full, closing stdin", chan);
            e->stdin_buf.len = 0;
            close_fd(&e->in_fd);
        }
    }
    if (eof) e->stdin_eof = 1;
    flush_stdin(e);
}

int exec_credit(struct agent *a, uint32_t chan, uint32_t bytes) {
    struct exec *e = find_exec(a, chan);
    if (!e) return -1;
    if (e->credit < (1ull << 40)) e->credit += bytes;
    return 0;
}

/* Output is held for the host's credit (a detached command's output is
 * discarded, so nothing holds it). */
static int held(const struct exec *e) { return e->attached && e->credited && e->credit == 0; }

int exec_kill(struct agent *a, uint32_t chan) {
    struct exec *e = find_exec(a, chan);
    if (!e) return -1;
    if (kill(-e->pid, SIGKILL) < 0 && !e->exited) kill(e->pid, SIGKILL);
    return 0;
}

void exec_reap(struct agent *a, pid_t pid, int status) {
    for (struct exec *e = a->execs; e; e = e->next) {
        if (e->pid == pid && !e->exited) {
            e->exited = 1;
            e->status = status;
            e->exit_ms = now_ms();
            return;
        }
    }
}

/* The host went away: keep the processes, discard their output, and give
 * them EOF on stdin since nobody can send more. */
void exec_detach_all(struct agent *a) {
    for (struct exec *e = a->execs; e; e = e->next) {
        e->attached = 0;
        e->stdin_buf.len = 0;
        close_fd(&e->in_fd);
    }
}

void exec_poll_add(struct agent *a, struct pollset *ps) {
    int open_tap = !conn_congested(a);
    for (struct exec *e = a->execs; e; e = e->next) {
        int tap = open_tap && !held(e);
        if (e->out_fd >= 0 && tap) pollset_add(ps, e->out_fd, POLLIN, e, ROLE_STDOUT);
        if (e->err_fd >= 0 && tap) pollset_add(ps, e->err_fd, POLLIN, e, ROLE_STDERR);
        if (e->in_fd >= 0 && e->stdin_buf.len) pollset_add(ps, e->in_fd, POLLOUT, e, ROLE_STDIN);
    }
}

/* Reads one chunk of output, within credit; closes the pipe at EOF. 1 when
 * data was read. */
static int pump(struct agent *a, struct exec *e, int *fd, uint16_t type) {
    static uint8_t chunk[HP_CHUNK_SIZE];
    size_t want = sizeof chunk;
    if (held(e)) return 0;
    if (e->attached && e->credited && e->credit < want) want = (size_t)e->credit;
    ssize_t n = read(*fd, chunk, want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) {
        close_fd(fd);
        return 0;
    }
    if (e->attached) {
        conn_send(a, type, e->chan, chunk, (size_t)n);
        if (e->credited) e->credit -= (uint64_t)n;
    }
    return 1;
}

void exec_event(struct agent *a, void *owner, int role, short revents) {
    struct exec *e = owner;
    if (role == ROLE_STDIN) {
        if (revents & (POLLERR | POLLHUP)) {
            e->stdin_buf.len = 0;
            close_fd(&e->in_fd);
        } else {
            flush_stdin(e);
        }
        return;
    }
    pump(a, e, role == ROLE_STDOUT ? &e->out_fd : &e->err_fd, role == ROLE_STDOUT ? HP_STDOUT : HP_STDERR);
}

static void finish(struct agent *a, struct exec *e) {
    /* Whatever is still buffered in the pipes belongs to the output. */
    for (int i = 0; i < 64 && e->out_fd >= 0 && pump(a, e, &e->out_fd, HP_STDOUT); i++) {
    }
    for (int i = 0; i < 64 && e->err_fd >= 0 && pump(a, e, &e->err_fd, HP_STDERR); i++) {
    }
    if (e->attached) {
        int sig = WIFSIGNALED(e->status) ? WTERMSIG(e->status) : 0;
        int code = sig ? 128 + sig : WEXITSTATUS(e->status);
        send_exit(a, e->chan, code, sig, "");
    }
}

void exec_service(struct agent *a, int64_t *timeout_ms) {
    int64_t now = now_ms();
    for (struct exec **pp = &a->execs; *pp;) {
        struct exec *e = *pp;
        if (e->exited) {
            /* The grace runs only while output may flow: what the command
             * printed before it exited waits in its pipes for the host's
             * credit however slow the host is. */
            if (held(e) && (e->out_fd >= 0 || e->err_fd >= 0)) {
                if (!e->stall_ms) e->stall_ms = now;
                pp = &e->next;
                continue;
            }
            if (e->stall_ms) {
                e->exit_ms += now - e->stall_ms;
                e->stall_ms = 0;
            }
            int64_t left = e->exit_ms + HP_EXIT_GRACE_MS - now;
            if ((e->out_fd < 0 && e->err_fd < 0) || left <= 0) {
                finish(a, e);
                *pp = e->next;
                exec_free(e);
                continue;
            }
            if (left < *timeout_ms) *timeout_ms = left;
        }
        pp = &e->next;
    }
}
