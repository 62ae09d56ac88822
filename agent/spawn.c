/*
 * Starting a command. The child reports an exec failure through a
 * close-on-exec pipe, so the agent knows before answering whether the
 * command started (EXIT 126/127 with a message if not).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
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

/* The child: never returns. Signals back to defaults, own session. */
static void child_exec(char **argv, char **envp, const char *path_env, const char *cwd, int fds[3],
                       int report_fd) {
    struct start_failure f = {0, 0};
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    setsid();
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0) _exit(EXIT_CANNOT_EXEC);
    if (chdir(cwd) < 0) {
        f.stage = 1;
        f.err = errno;
    } else if (strchr(argv[0], '/')) {
        execve(argv[0], argv, envp);
        f.err = errno;
    } else {
        /* Like execvp, but searching the PATH the command will see. */
        char full[4096];
        int saw_eacces = 0;
        f.err = ENOENT;
        for (const char *p = path_env; p;) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            int n = snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? p : ".", argv[0]);
            p = colon ? colon + 1 : NULL;
            if (n < 0 || (size_t)n >= sizeof full) continue;
            execve(full, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) {
                f.err = errno;
                break;
            }
        }
        if (saw_eacces && f.err == ENOENT) f.err = EACCES;
    }
    ssize_t w = write(report_fd, &f, sizeof f);
    (void)w;
    _exit(f.err == ENOENT && f.stage == 0 ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
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
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
    char **envp = env_to_array(env);
    const char *path_env = default_env[0][1];
    *exit_code = 0;
    for (size_t i = 0; i < env->n; i++)
        if (strcmp(env->items[i].key, "PATH") == 0) path_env = env->items[i].value;
    if (!envp || pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
        pipe2(rep, O_CLOEXEC)) {
        int saved = envp ? errno : ENOMEM;
        LOG_ERRNO("exec pipes");
        free_strv(envp);
        close_pair(in);
        close_pair(out);
        close_pair(err);
        close_pair(rep);
        snprintf(msg, msg_len, "cannot create pipes: %s", strerror(saved));
        errno = saved;
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int fds[3] = {in[0], out[1], err[1]};
        close(rep[0]);
        child_exec(argv, envp, path_env, cwd, fds, rep[1]);
    }
    int fork_errno = errno;
    free_strv(envp);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(rep[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        close(rep[0]);
        errno = fork_errno;
        LOG_ERRNO("fork");
        snprintf(msg, msg_len, "cannot fork: %s", strerror(fork_errno));
        errno = fork_errno;
        return -1;
    }
    /* Blocks only until the child has exec'd (pipe closed) or failed. */
    struct start_failure f;
    ssize_t n;
    do n = read(rep[0], &f, sizeof f);
    while (n < 0 && errno == EINTR);
    close(rep[0]);
    if (n == (ssize_t)sizeof f) {
        int status;
        waitpid(pid, &status, 0);
        close(in[1]);
        close(out[0]);
        close(err[0]);
        snprintf(msg, msg_len, "%s %s: %s", f.stage ? "cannot change directory to" : "cannot execute",
                 f.stage ? cwd : argv[0], strerror(f.err));
        *exit_code = f.err == ENOENT && f.stage == 0 ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
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
