/* Starting a command: clone (vfork-like), own session, execve with the child's PATH. */
#ifndef HUTCH_SPAWN_H
#define HUTCH_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include "agent.h"

/* Exit codes of a command that could not be started, as shells use them. */
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

struct child {
    pid_t pid;
    int in_fd, out_fd, err_fd; /* non-blocking, close-on-exec, ours */
};

/*
 * 0 when the command runs. Otherwise -1 and msg says why: with *exit_code
 * 126/127 when the command could not be started (not found, not executable,
 * bad cwd), or *exit_code 0 and errno set when the agent failed (pipes, fork).
 */
int spawn_command(char **argv, const struct env_list *env, const char *cwd, struct child *c,
                  int *exit_code, char *msg, size_t msg_len);

/* PATH, HOME, USER, LANG: the base of every command's environment. */
int env_defaults(struct env_list *e);

void free_strv(char **v);

#endif
