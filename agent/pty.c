/*
 * Interactive shells on a pseudo-terminal. PTY_OPEN starts a login shell
 * (bash -l, else sh -l) as the session leader of a new PTY; STDIN/STDOUT
 * carry terminal bytes within credit windows (HP_TCP_WINDOW each way, topped
 * up with CREDIT, as on a TCP relay); PTY_RESIZE sets the window size; EXIT
 * ends the channel when the shell is gone. KILL hangs up: SIGHUP to the
 * session and the master closed, as when a terminal goes away.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "spawn.h"

enum { ROLE_PTY = 20 };

/* A window size the kernel and shells accept when the host sends 0. */
#define DEFAULT_ROWS 24u
#define DEFAULT_COLS 80u

struct pty {
    struct pty *next;
    uint32_t chan;
    pid_t pid;    /* the shell: session leader, process group id */
    int master;   /* non-blocking, close-on-exec */
    int exited, status;
    int64_t exit_ms;
    int eof;            /* the master read EIO/EOF: no process holds the terminal */
    struct buf to_tty;  /* from the host, not yet written to the master */
    uint64_t credit;    /* output bytes we may still send to the host */
    uint32_t consumed;  /* written to the master since our last CREDIT */
};

static struct pty *find_pty(struct agent *a, uint32_t chan) {
    for (struct pty *t = a->ptys; t; t = t->next)
        if (t->chan == chan) return t;
    return NULL;
}

/*
 * Sends sig to every process of session sid. An interactive shell puts each
 * job in its own process group, so signalling the shell's group is not
 * enough; a real hang-up relies on the shell forwarding SIGHUP, which a
 * busy or non-interactive shell may not do in time. Processes that left the
 * session (setsid: daemons such as sshd) are not touched.
 */
static void signal_session(pid_t sid, int sig) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], line[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = 0;
        /* pid (comm) state ppid pgrp session ...: comm may hold spaces and parens. */
        char *rp = strrchr(line, ')');
        int ppid, pgrp, session;
        char state;
        if (rp && sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) == 4 && session == sid)
            kill((pid_t)atoi(e->d_name), sig);
    }
    if (d) closedir(d);
}

/* Unlinks and frees; closing the master hangs up whatever still uses it. */
static void pty_free(struct agent *a, struct pty *t) {
    for (struct pty **pp = &a->ptys; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    /* Also after the shell exited: its jobs may still run in its session. */
    signal_session(t->pid, SIGHUP);
    signal_session(t->pid, SIGCONT); /* a stopped job must wake up to see the SIGHUP */
    if (t->master >= 0) close(t->master);
    buf_free(&t->to_tty);
    free(t);
}

static void set_size(int fd, uint32_t rows, uint32_t cols) {
    struct winsize ws = {.ws_row = (unsigned short)(rows ? rows : DEFAULT_ROWS),
                         .ws_col = (unsigned short)(cols ? cols : DEFAULT_COLS)};
    if (ioctl(fd, TIOCSWINSZ, &ws) < 0) LOG_ERRNO("TIOCSWINSZ");
}

/* The child: new session, the PTY as controlling terminal, exec the shell. */
static void child_shell(const char *slave, const char *shell, char **envp, const char *cwd, int report_fd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    int err = 0;
    if (setsid() < 0) err = errno;
    int fd = err ? -1 : open(slave, O_RDWR);
    if (!err && fd < 0) err = errno;
    if (!err && ioctl(fd, TIOCSCTTY, 0) < 0) err = errno;
    for (int i = 0; !err && i < 3; i++)
        if (dup2(fd, i) < 0) err = errno;
    if (fd > 2) close(fd);
    if (!err && chdir(cwd) < 0) err = errno;
    if (!err) {
        const char *base = strrchr(shell, '/') ? strrchr(shell, '/') + 1 : shell;
        char *argv[] = {(char *)base, "-l", NULL};
        execve(shell, argv, envp);
        err = errno;
    }
    ssize_t w = write(report_fd, &err, sizeof err);
    (void)w;
    _exit(EXIT_CANNOT_EXEC);
}

static char **env_array(const struct env_list *e) {
    char **out = calloc(e->n + 1, sizeof *out);
    for (size_t i = 0; out && i < e->n; i++) {
        if (asprintf(&out[i], "%s=%s", e->items[i].key, e->items[i].value) < 0) {
            out[i] = NULL;
            free_strv(out);
            return NULL;
        }
    }
    return out;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Opens the PTY pair and starts the shell on it. -1 with errno and msg. */
static int start_shell(struct pty *t, uint32_t rows, uint32_t cols, struct env_list *env, char *msg, size_t msg_len) {
    const char *shell = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
    char slave[128];
    int rep[2] = {-1, -1};
    t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (t->master < 0 || grantpt(t->master) < 0 || unlockpt(t->master) < 0 ||
        ptsname_r(t->master, slave, sizeof slave) != 0) {
        snprintf(msg, msg_len, "cannot open a pseudo-terminal: %s", strerror(errno));
        return -1;
    }
    set_size(t->master, rows, cols);
    if (env_set(env, "TERM", "xterm-256color") < 0 || env_set(env, "SHELL", shell) < 0) {
        snprintf(msg, msg_len, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    char **envp = env_array(env);
    if (!envp || pipe2(rep, O_CLOEXEC) < 0) {
        int e = envp ? errno : ENOMEM;
        free_strv(envp);
        snprintf(msg, msg_len, "cannot start the shell: %s", strerror(e));
        errno = e;
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(rep[0]);
        child_shell(slave, shell, envp, is_dir("/root") ? "/root" : "/", rep[1]);
    }
    int fork_err = errno;
    free_strv(envp);
    close(rep[1]);
    if (pid < 0) {
        close(rep[0]);
        snprintf(msg, msg_len, "cannot fork: %s", strerror(fork_err));
        errno = fork_err;
        return -1;
    }
    /* Blocks only until the shell has exec'd (pipe closed) or failed. */
    int child_err = 0;
    ssize_t n;
    do n = read(rep[0], &child_err, sizeof child_err);
    while (n < 0 && errno == EINTR);
    close(rep[0]);
    if (n == (ssize_t)sizeof child_err) {
        waitpid(pid, NULL, 0);
        snprintf(msg, msg_len, "cannot start %s: %s", shell, strerror(child_err));
        errno = child_err;
        return -1;
    }
    t->pid = pid;
    fcntl(t->master, F_SETFL, O_NONBLOCK);
    return 0;
}

/* PTY_OPEN: u32 rows, u32 cols, kv env. Answered OK once the shell runs, or ERROR. */
void pty_open(struct agent *a, uint32_t chan, struct rd *r) {
    struct env_list env = {0};
    uint32_t rows = rd_u32(r), cols = rd_u32(r);
    int ok = !r->err && rows <= 0xffff && cols <= 0xffff && env_defaults(&env) == 0;
    for (size_t i = 0; ok && i < a->envs.n; i++) ok = env_set(&env, a->envs.items[i].key, a->envs.items[i].value) == 0;
    ok = ok && env_read(r, &env) == 0 && rd_done(r) == 0;
    struct pty *t = NULL;
    if (!ok) {
        conn_send_error(a, chan, EINVAL, "bad PTY_OPEN");
    } else if (find_pty(a, chan)) {
        conn_send_error(a, chan, EEXIST, "channel in use");
    } else if (!(t = calloc(1, sizeof *t))) {
        conn_send_error(a, chan, ENOMEM, "out of memory");
    } else {
        char msg[256];
        t->chan = chan;
        t->credit = HP_TCP_WINDOW;
        t->master = -1;
        if (start_shell(t, rows, cols, &env, msg, sizeof msg) < 0) {
            int e = errno ? errno : EIO;
            log_line("warn", "pty %u: %s", chan, msg);
            conn_send_error(a, chan, e, msg);
            if (t->master >= 0) close(t->master);
            free(t);
        } else {
            t->next = a->ptys;
            a->ptys = t;
            conn_send_ok(a, chan);
        }
    }
    env_free(&env);
}

/* Writes what the host typed; returns CREDIT in batches. */
static void flush_to_tty(struct agent *a, struct pty *t) {
    while (t->to_tty.len > 0 && !t->eof) {
        ssize_t n = write(t->master, t->to_tty.data, t->to_tty.len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) { /* EIO: nobody holds the terminal any more */
            t->eof = 1;
            break;
        }
        buf_consume(&t->to_tty, (size_t)n);
        t->consumed += (uint32_t)n;
    }
    if (t->eof) t->to_tty.len = 0;
    if (t->consumed >= HP_TCP_WINDOW / 4 || (t->consumed && t->to_tty.len == 0)) {
        struct buf b = {0};
        if (!put_u32(&b, t->consumed)) conn_send(a, HP_CREDIT, t->chan, b.data, b.len);
        buf_free(&b);
        t->consumed = 0;
    }
}

int pty_input(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n) {
    struct pty *t = find_pty(a, chan);
    if (!t) return -1;
    if (t->to_tty.len + n > 2 * HP_TCP_WINDOW) { /* the host ignored its credit */
        conn_send_error(a, chan, EPROTO, "terminal input beyond credit");
        pty_free(a, t);
        return 0;
    }
    if (n && !t->eof && buf_append(&t->to_tty, p, n)) {
        conn_send_error(a, chan, ENOMEM, "out of memory");
        pty_free(a, t);
        return 0;
    }
    flush_to_tty(a, t);
    return 0;
}

/* PTY_RESIZE: u32 rows, u32 cols. The kernel signals SIGWINCH to the
 * foreground job when the size changes; we send it too, so a program that
 * missed the change (it raced its own start) still redraws. */
int pty_resize(struct agent *a, uint32_t chan, struct rd *r) {
    struct pty *t = find_pty(a, chan);
    if (!t) return -1;
    uint32_t rows = rd_u32(r), cols = rd_u32(r);
    if (rd_done(r) || rows > 0xffff || cols > 0xffff) {
        log_line("warn", "pty %u: bad PTY_RESIZE ignored", chan);
        return 0;
    }
    set_size(t->master, rows, cols);
    pid_t fg = tcgetpgrp(t->master);
    kill(fg > 0 ? -fg : -t->pid, SIGWINCH);
    return 0;
}

int pty_credit(struct agent *a, uint32_t chan, uint32_t bytes) {
    struct pty *t = find_pty(a, chan);
    if (!t) return -1;
    if (t->credit < (1ull << 40)) t->credit += bytes;
    return 0;
}

/* KILL: hang up (SIGHUP to the session, master closed); no answer. */
int pty_hangup(struct agent *a, uint32_t chan) {
    struct pty *t = find_pty(a, chan);
    if (!t) return -1;
    pty_free(a, t);
    return 0;
}

void pty_drop_all(struct agent *a) {
    while (a->ptys) pty_free(a, a->ptys);
}

void pty_reap(struct agent *a, pid_t pid, int status) {
    for (struct pty *t = a->ptys; t; t = t->next) {
        if (t->pid == pid && !t->exited) {
            t->exited = 1;
            t->status = status;
            t->exit_ms = now_ms();
            return;
        }
    }
}

void pty_poll_add(struct agent *a, struct pollset *ps) {
    for (struct pty *t = a->ptys; t; t = t->next) {
        short ev = 0;
        if (!t->eof && t->credit > 0 && !conn_congested(a)) ev |= POLLIN;
        if (!t->eof && t->to_tty.len) ev |= POLLOUT;
        if (ev) pollset_add(ps, t->master, ev, t, ROLE_PTY);
    }
}

int pty_owns(int role) { return role == ROLE_PTY; }

/* Reads one chunk of terminal output. 1 when data was sent. */
static int pump(struct agent *a, struct pty *t) {
    static uint8_t chunk[HP_CHUNK_SIZE];
    if (t->eof || t->credit == 0) return 0;
    size_t want = t->credit < sizeof chunk ? (size_t)t->credit : sizeof chunk;
    ssize_t n = read(t->master, chunk, want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) { /* EIO once the last holder of the slave closed it */
        t->eof = 1;
        return 0;
    }
    conn_send(a, HP_STDOUT, t->chan, chunk, (size_t)n);
    t->credit -= (uint64_t)n;
    return 1;
}

void pty_event(struct agent *a, void *owner, short revents) {
    struct pty *t = owner;
    if (revents & POLLOUT) flush_to_tty(a, t);
    if (revents & (POLLIN | POLLHUP | POLLERR)) pump(a, t);
}

/* EXIT once the shell is gone and the terminal drained (or HP_EXIT_GRACE_MS
 * passed: a background job may hold the terminal open forever). */
void pty_service(struct agent *a, int64_t *timeout_ms) {
    int64_t now = now_ms();
    for (struct pty *t = a->ptys, *next; t; t = next) {
        next = t->next;
        if (!t->exited) continue;
        int64_t left = t->exit_ms + HP_EXIT_GRACE_MS - now;
        if (!t->eof && left > 0) {
            if (left < *timeout_ms) *timeout_ms = left;
            continue;
        }
        for (int i = 0; i < 64 && pump(a, t); i++) {
        }
        int sig = WIFSIGNALED(t->status) ? WTERMSIG(t->status) : 0;
        int code = sig ? 128 + sig : WEXITSTATUS(t->status);
        struct buf b = {0};
        if (!put_u32(&b, (uint32_t)code) && !put_u32(&b, (uint32_t)sig) && !put_str(&b, ""))
            conn_send(a, HP_EXIT, t->chan, b.data, b.len);
        buf_free(&b);
        pty_free(a, t);
    }
}
