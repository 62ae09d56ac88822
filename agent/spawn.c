/*
 * Starting a command. The child shares the agent's memory until it execs
 * (clone CLONE_VM | CLONE_VFORK, as posix_spawn does) and leaves why it
 * could not start there, so the agent knows before answering whether the
 * command started (EXIT 126/127 with a message if not).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* What the child reports through its close-on-exec pipe when exec fails. */
struct start_failure {
    int stage; /* 0: execve, 1: chdir */
    int err;
};

static const char *const default_env[][2] = {
    {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    {"HOME", "/root"},
    {"USER", "root"},
    {"LANG", "C.UTF-8"},
};

int env_defaults(struct env_list *e) {
    for (size_t i = 0; i < sizeof default_env / sizeof default_env[0]; i++)
        if (env_set(e, default_env[i][0], default_env[i][1]) < 0) return -1;
    return 0;
}

static void close_pair(int p[2]) {
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) close(p[i]);
}

/* What the child needs; it writes `f` when the command cannot start. */
struct job {
    char **argv, **envp;
    const char *path_env, *cwd;
    int fds[3];
    struct start_failure f;
};

/* Signals the agent ignores (SIG_IGN survives execve; handlers do not, and
 * the agent has none): the only ones a command must get back to default. */
static sigset_t ignored;

static void find_ignored(void) {
    static int done;
    if (done) return;
    sigemptyset(&ignored);
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) sigaddset(&ignored, s);
    }
    done = 1;
}

/* execve unless path surely does not exist: a failed execve sets up a new
 * address space before it looks at the file, a lookup is much cheaper.
 * Anything but ENOENT/ENOTDIR is left for execve to report. */
static void try_exec(const char *path, char **argv, char **envp) {
    if (access(path, F_OK) < 0 && (errno == ENOENT || errno == ENOTDIR)) return;
    execve(path, argv, envp);
}

/*
 * The child, sharing the agent's memory (CLONE_VM | CLONE_VFORK) while the
 * agent waits: only system calls, no allocation, nothing of the agent's
 * state touched but job->f. Signals back to defaults, own session.
 */
static int child_main(void *arg) {
    struct job *j = arg;
    char **argv = j->argv;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&ignored, s) == 1) sigaction(s, &dfl, NULL);
    setsid();
    for (int i = 0; i < 3; i++) {
        if (dup2(j->fds[i], i) < 0) {
            j->f.err = errno;
            _exit(EXIT_CANNOT_EXEC);
        }
    }
    if (chdir(j->cwd) < 0) {
        j->f.stage = 1;
        j->f.err = errno;
    } else if (strchr(argv[0], '/')) {
        execve(argv[0], argv, j->envp);
        j->f.err = errno;
    } else {
        /* Like execvp, but searching the PATH the command will see. */
        char full[4096];
        size_t name_len = strlen(argv[0]);
        int saw_eacces = 0, err = ENOENT;
        for (const char *p = j->path_env; p;) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            const char *dir = len ? p : ".";
            p = colon ? colon + 1 : NULL;
            if (!len) len = 1;
            if (len + 1 + name_len + 1 > sizeof full) continue;
            memcpy(full, dir, len);
            full[len] = '/';
            memcpy(full + len + 1, argv[0], name_len + 1);
            try_exec(full, argv, j->envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) {
                err = errno;
                break;
            }
        }
        j->f.err = saw_eacces && err == ENOENT ? EACCES : err;
    }
    _exit(j->f.err == ENOENT && j->f.stage == 0 ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
}

static char **env_to_array(const struct env_list *e) {
    char **out = calloc(e->n + 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < e->n; i++) {
        if (asprintf(&out[i], "%s=%s", e->items[i].key, e->items[i].value) < 0) {
            out[i] = NULL;
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

void free_strv(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

int spawn_command(char **argv, const struct env_list *env, const char *cwd, struct child *c,
                  int *exit_code, char *msg, size_t msg_len) {
    /* The child's stack while it shares our memory (one spawn at a time). */
    static _Alignas(16) char stack[64 * 1024];
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    char **envp = env_to_array(env);
    struct job j = {.argv = argv, .envp = envp, .path_env = default_env[0][1], .cwd = cwd};
    *exit_code = 0;
    find_ignored();
    for (size_t i = 0; i < env->n; i++)
        if (strcmp(env->items[i].key, "PATH") == 0) j.path_env = env->items[i].value;
    if (!envp || pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        int saved = envp ? errno : ENOMEM;
        LOG_ERRNO("exec pipes");
        free_strv(envp);
        close_pair(in);
        close_pair(out);
        close_pair(err);
        snprintf(msg, msg_len, "cannot create pipes: %s", strerror(saved));
        errno = saved;
        return -1;
    }
    j.fds[0] = in[0];
    j.fds[1] = out[1];
    j.fds[2] = err[1];
    /* Like vfork: no copy of our address space for a process that execs at
     * once (under TCG a fork and its copy-on-write faults cost milliseconds),
     * and we go on only once the child has exec'd (close-on-exec fds gone)
     * or exited with j.f set. SIGCHLD: reaped like any child. */
    pid_t pid = clone(child_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &j);
    int clone_errno = errno;
    free_strv(envp);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        errno = clone_errno;
        LOG_ERRNO("clone");
        snprintf(msg, msg_len, "cannot fork: %s", strerror(clone_errno));
        errno = clone_errno;
        return -1;
    }
    if (j.f.err) {
        int status;
        waitpid(pid, &status, 0);
        close(in[1]);
        close(out[0]);
        close(err[0]);
        snprintf(msg, msg_len, "%s %s: %s", j.f.stage ? "cannot change directory to" : "cannot execute",
                 j.f.stage ? cwd : argv[0], strerror(j.f.err));
        *exit_code = j.f.err == ENOENT && j.f.stage == 0 ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
        return -1;
    }
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    return 0;
}
