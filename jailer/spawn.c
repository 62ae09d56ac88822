/*
 * hutch-spawn: starts VMM processes for the server, so the server never
 * forks itself. A fork of the server (Node: libuv forks) copies the page
 * tables of a process of 100+ MB and write-protects all of its pages: the
 * call blocks the event loop for 8-13 ms, and the server's next writes fault
 * once per page, tens of ms of CPU more (measured on a nested TCG host:
 * spawn() 12 ms and +30-38 ms on the work that followed, at 220-270 MB RSS).
 * This process is small, so its fork costs next to nothing.
 *
 *   hutch-spawn      (requests on stdin, reports on stdout)
 *
 * Request: u32 length of the rest (little endian), u32 id, u32 argc,
 * u32 envc, then NUL-terminated strings: cwd, log file, input file ("" for
 * none), argv[0..argc), env[0..envc). The child runs in a session of its
 * own, in cwd, with stdin /dev/null, stdout and stderr appended to the log
 * file (created 0600), the input file open read-only at fd 3, the given
 * environment only, and argv[0] looked up in that environment's PATH.
 *
 * Reports, one line each:
 *   started ID PID
 *   failed ID ERRNO MESSAGE      (nothing runs; ERRNO as from execve/open)
 *   exited PID CODE SIGNAL       (CODE -1 when killed, SIGNAL 0 when not)
 *
 * Children are not tied to this process: when stdin closes (the server
 * exits or dies) it exits and they run on, adopted by init, as a restarted
 * server expects. Exit 2 on a malformed request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (1u << 20)
#define MAX_STRINGS 4096

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1, line[n - 1] = '\n';
    for (const char *p = line; n > 0;) {
        ssize_t w = write(STDOUT_FILENO, p, (size_t)n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) exit(0); /* the server is gone */
        p += w;
        n -= (int)w;
    }
}

static uint32_t u32_at(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* execve of `file`, searched in `path` when it has no slash (execvpe's rules:
 * go on past ENOENT/ENOTDIR/EACCES, report EACCES if that was seen). */
static void exec_path(const char *file, char **argv, char **envp, const char *path) {
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return;
    }
    int saw_eacces = 0;
    char full[4096];
    for (const char *p = path; p && *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (len > 0 && len + 1 + strlen(file) < sizeof full) {
            memcpy(full, p, len);
            full[len] = '/';
            strcpy(full + len + 1, file);
            execve(full, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) return;
        }
        p = colon ? colon + 1 : NULL;
    }
    errno = saw_eacces ? EACCES : ENOENT;
}

static void spawn_one(uint32_t id, char **s, uint32_t argc, uint32_t envc) {
    const char *cwd = s[0], *log = s[1], *input = s[2];
    char **argv = s + 3, **envp = s + 3 + argc + 1;
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (uint32_t i = 0; i < envc; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0) path = envp[i] + 5;

    int logfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (logfd < 0) {
        report("failed %u %d open %s: %s\n", id, errno, log, strerror(errno));
        return;
    }
    int infd = -1;
    if (*input && (infd = open(input, O_RDONLY | O_CLOEXEC)) < 0) {
        report("failed %u %d open %s: %s\n", id, errno, input, strerror(errno));
        close(logfd);
        return;
    }
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int errpipe[2];
    if (nullfd < 0 || pipe2(errpipe, O_CLOEXEC) < 0) {
        report("failed %u %d setup: %s\n", id, errno, strerror(errno));
        if (nullfd >= 0) close(nullfd);
        close(logfd);
        if (infd >= 0) close(infd);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* Each dup2 target ends up without CLOEXEC; everything else of ours has it. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int err = 0;
        /* (fcntl: dup2 onto the same number would leave its close-on-exec set.) */
        if (setsid() < 0 || chdir(cwd) < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
            (infd >= 0 && (dup2(infd, 3) < 0 || fcntl(3, F_SETFD, 0) < 0)))
            err = errno;
        if (!err) {
            exec_path(argv[0], argv, envp, path);
            err = errno;
        }
        (void)!write(errpipe[1], &err, sizeof err);
        _exit(127);
    }
    int fork_err = errno;
    close(errpipe[1]);
    close(nullfd);
    close(logfd);
    if (infd >= 0) close(infd);
    if (pid < 0) {
        close(errpipe[0]);
        report("failed %u %d fork: %s\n", id, fork_err, strerror(fork_err));
        return;
    }
    /* EOF: execve succeeded (the pipe was close-on-exec). */
    int err = 0;
    ssize_t n;
    while ((n = read(errpipe[0], &err, sizeof err)) < 0 && errno == EINTR) {}
    close(errpipe[0]);
    if (n == (ssize_t)sizeof err) {
        /* Its exit is reported like any other; the server ignores pids it never got. */
        report("failed %u %d %s: %s\n", id, err, argv[0], strerror(err));
        return;
    }
    report("started %u %d\n", id, (int)pid);
}

/* Parses and runs one request of `len` bytes; 0, or -1 when malformed. */
static int handle(unsigned char *req, uint32_t len) {
    if (len < 12) return -1;
    uint32_t id = u32_at(req), argc = u32_at(req + 4), envc = u32_at(req + 8);
    if (argc < 1 || argc > MAX_STRINGS || envc > MAX_STRINGS) return -1;
    uint32_t want = 3 + argc + envc;
    static char *s[3 + MAX_STRINGS + 1 + MAX_STRINGS + 1];
    char *p = (char *)req + 12, *end = (char *)req + len;
    for (uint32_t i = 0, k = 0; i < want; i++) {
        char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z) return -1;
        s[k++] = p;
        if (i == 2 + argc) s[k++] = NULL; /* argv's terminator; env follows */
        p = z + 1;
    }
    if (p != end) return -1;
    s[3 + argc + 1 + envc] = NULL;
    spawn_one(id, s, argc, envc);
    return 0;
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (WIFEXITED(status)) report("exited %d %d 0\n", (int)pid, WEXITSTATUS(status));
        else if (WIFSIGNALED(status)) report("exited %d -1 %d\n", (int)pid, WTERMSIG(status));
    }
}

int main(void) {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0) return 1;
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC);
    fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC);
    unsigned char *buf = malloc(MAX_REQUEST + 4);
    if (!buf) return 1;
    size_t have = 0;
    for (;;) {
        struct pollfd ps[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(ps, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (ps[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {}
            reap();
        }
        if (ps[0].revents) {
            ssize_t n = read(STDIN_FILENO, buf + have, MAX_REQUEST + 4 - have);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 0; /* the server closed stdin: children run on */
            have += (size_t)n;
            while (have >= 4) {
                uint32_t len = u32_at(buf);
                if (len > MAX_REQUEST) return 2;
                if (have < 4 + (size_t)len) break;
                if (handle(buf + 4, len) < 0) return 2;
                memmove(buf, buf + 4 + len, have - 4 - len);
                have -= 4 + len;
            }
            reap(); /* a child may have exited before its "started" line */
        }
    }
}
