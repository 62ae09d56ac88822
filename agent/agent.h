/* State shared by the agent's modules; one instance, single-threaded. */
#ifndef HUTCH_AGENT_H
#define HUTCH_AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "protocol.h"

#define AGENT_VERSION "0.1.0"

/* The agent's tmpfs directory (images/init.sh copies the agent here); the
 * image links /etc/hostname, /etc/hosts and /etc/resolv.conf into it. */
#define HUTCH_RUN_DIR "/run/hutch"
/* Stop reading producers (pipes, files) while this much output is queued. */
#define OUT_HIGH_WATER (1024u * 1024u)

struct kv {
    char *key, *value;
};

struct env_list {
    struct kv *items;
    size_t n;
};

struct exec;
struct fileop;
struct tcpconn;
struct pty;

struct agent {
    const char *channel_path;
    int init_mode; /* PID-1 duties and system changes enabled */
    int fd;        /* channel; -1 while (re)connecting */
    int is_socket;
    int64_t idle_until_ms; /* virtio port without a host: don't poll it until then */
    int64_t retry_at_ms;
    struct buf in, out;
    int64_t partial_since;  /* when the incomplete frame at in[0] was first seen; 0: none */
    int have_session;
    uint8_t nonce[HP_NONCE_SIZE];
    uint32_t proto; /* protocol version agreed with the current host (HELLO) */
    int sigfd;
    struct env_list envs; /* sandbox envs from CONFIGURE, for every exec */
    int etc_watch;        /* inotify on /etc (configure.c); -1: none, identity links looked up each time */
    unsigned id_links;    /* bit i: ID_FILES[i] is the image's link into HUTCH_RUN_DIR */
    int id_links_stale;   /* /etc changed since id_links was read */
    struct exec *execs;
    struct fileop *files;
    struct tcpconn *tcps;
    struct pty *ptys;
};

int64_t now_ms(void);

/* conn.c: the channel to the host. */
int conn_send(struct agent *a, uint16_t type, uint32_t chan, const void *p, size_t n);
int conn_send_error(struct agent *a, uint32_t chan, int err, const char *msg);
int conn_send_ok(struct agent *a, uint32_t chan);
int conn_congested(const struct agent *a);
void conn_open(struct agent *a);
void conn_readable(struct agent *a);
void conn_writable(struct agent *a);
void conn_tick(struct agent *a);
void conn_drop(struct agent *a, const char *why);
void conn_host_gone(struct agent *a);

/* dispatch.c: one complete frame from the host. */
void dispatch_frame(struct agent *a, uint16_t type, uint32_t chan, const uint8_t *p, uint32_t n);
/* Forget every channel of the previous host connection. */
void session_reset(struct agent *a);

/* env.c */
void env_free(struct env_list *e);
int env_set(struct env_list *e, const char *key, const char *value);
int env_read(struct rd *r, struct env_list *e);

/* configure.c */
void handle_configure(struct agent *a, uint32_t chan, struct rd *r);
/* At boot: which identity files are links, and a watch on /etc for changes to that. */
void identity_files_init(struct agent *a);

/* exec.c */
void exec_start(struct agent *a, uint32_t chan, struct rd *r);
void exec_stdin(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n, int eof);
int exec_kill(struct agent *a, uint32_t chan);
int exec_credit(struct agent *a, uint32_t chan, uint32_t bytes); /* -1: not an exec */
void exec_reap(struct agent *a, pid_t pid, int status);
void exec_detach_all(struct agent *a);
/* pollfd registration and servicing, see main.c */
struct pollset;
void exec_poll_add(struct agent *a, struct pollset *ps);
void exec_event(struct agent *a, void *owner, int role, short revents);
void exec_service(struct agent *a, int64_t *timeout_ms);

/* files.c */
void file_write_open(struct agent *a, uint32_t chan, struct rd *r);
void file_write_data(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n);
void file_write_end(struct agent *a, uint32_t chan);
void file_read_open(struct agent *a, uint32_t chan, struct rd *r);
void file_credit(struct agent *a, uint32_t chan, uint32_t bytes);
int file_cancel(struct agent *a, uint32_t chan);
void file_drop_all(struct agent *a);
void file_service(struct agent *a, int64_t *timeout_ms);

/* tcp.c: port relay to 127.0.0.1 */
struct pollset;
void tcp_connect(struct agent *a, uint32_t chan, struct rd *r);
void tcp_from_host(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n, int eof);
int tcp_credit(struct agent *a, uint32_t chan, uint32_t bytes);
int tcp_close(struct agent *a, uint32_t chan);
void tcp_drop_all(struct agent *a);
void tcp_poll_add(struct agent *a, struct pollset *ps);
int tcp_owns(int role);
void tcp_event(struct agent *a, void *owner, short revents);

/* pty.c: interactive shells; each returns -1 when chan is not a PTY */
void pty_open(struct agent *a, uint32_t chan, struct rd *r);
int pty_input(struct agent *a, uint32_t chan, const uint8_t *p, uint32_t n);
int pty_resize(struct agent *a, uint32_t chan, struct rd *r);
int pty_credit(struct agent *a, uint32_t chan, uint32_t bytes);
int pty_hangup(struct agent *a, uint32_t chan);
void pty_drop_all(struct agent *a);
void pty_reap(struct agent *a, pid_t pid, int status);
void pty_poll_add(struct agent *a, struct pollset *ps);
int pty_owns(int role);
void pty_event(struct agent *a, void *owner, short revents);
void pty_service(struct agent *a, int64_t *timeout_ms);

/* init.c: PID-1 duties */
int init_system(struct agent *a);
int init_signals(struct agent *a);
void reap_children(struct agent *a);

/* pollset: fds to watch this round, each with a callback owner. */
struct pollset {
    struct pollfd *fds;
    void **owners;
    int *roles;
    size_t n, cap;
};
int pollset_add(struct pollset *ps, int fd, short events, void *owner, int role);

#endif
