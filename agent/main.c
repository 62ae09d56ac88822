/*
 * hutch-agent: the guest side of Hutch. PID 1 in the VM (after the
 * initramfs' switch_root); on the host, with --no-init, a black box for tests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pollset_add(struct pollset *ps, int fd, short events, void *owner, int role) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 32;
        struct pollfd *f = realloc(ps->fds, cap * sizeof *f);
        if (f) ps->fds = f;
        void **o = realloc(ps->owners, cap * sizeof *o);
        if (o) ps->owners = o;
        int *r = realloc(ps->roles, cap * sizeof *r);
        if (r) ps->roles = r;
        if (!f || !o || !r) return -1;
        ps->cap = cap;
    }
    ps->fds[ps->n] = (struct pollfd){.fd = fd, .events = events};
    ps->owners[ps->n] = owner;
    ps->roles[ps->n] = role;
    ps->n++;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: hutch-agent [--channel PATH] [--no-init] [--version]\n"
                    "  --channel PATH  device, or unix socket to connect to (default: the virtio\n"
                    "                  port named " HP_PORT_NAME ", else /dev/hvc0)\n"
                    "  --no-init       skip PID-1 setup and system changes (tests)\n");
}

static int parse_args(struct agent *a, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--channel") == 0 && i + 1 < argc) {
            a->channel_path = argv[++i];
        } else if (strcmp(argv[i], "--no-init") == 0) {
            a->init_mode = 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("hutch-agent %s (protocol %u)\n", AGENT_VERSION, HP_VERSION);
            exit(0);
        } else {
            usage();
            return -1;
        }
    }
    return 0;
}

/* Commands get fds 0-2 from pipes; make sure those numbers are taken. */
static int ensure_std_fds(void) {
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) return -1;
    }
    return 0;
}

static void run(struct agent *a) {
    struct pollset ps = {0};
    for (;;) {
        int64_t timeout = 1000;
        if (a->fd < 0 && now_ms() >= a->retry_at_ms) conn_open(a);
        reap_children(a);
        exec_service(a, &timeout);
        file_service(a, &timeout);
        pty_service(a, &timeout);
        conn_tick(a);
        if (a->fd < 0) {
            int64_t left = a->retry_at_ms - now_ms();
            if (left < timeout) timeout = left < 0 ? 0 : left;
        } else if (a->partial_since && HP_STALL_MS < timeout) {
            timeout = HP_STALL_MS;
        }
        ps.n = 0;
        pollset_add(&ps, a->sigfd, POLLIN, NULL, 0);
        int conn_idx = -1;
        int64_t idle = a->idle_until_ms - now_ms();
        if (a->fd >= 0 && idle > 0 && idle < timeout) timeout = idle;
        if (a->fd >= 0 && idle <= 0) {
            conn_idx = (int)ps.n;
            short ev = (a->in.len < HP_HEADER_SIZE + HP_MAX_PAYLOAD ? POLLIN : 0) | (a->out.len ? POLLOUT : 0);
            pollset_add(&ps, a->fd, ev, NULL, 0);
        }
        exec_poll_add(a, &ps);
        tcp_poll_add(a, &ps);
        pty_poll_add(a, &ps);
        if (poll(ps.fds, ps.n, (int)timeout) < 0) {
            if (errno != EINTR) LOG_ERRNO("poll");
            continue;
        }
        for (size_t i = 1; i < ps.n; i++) {
            if ((int)i == conn_idx || !ps.fds[i].revents) continue;
            if (tcp_owns(ps.roles[i])) tcp_event(a, ps.owners[i], ps.fds[i].revents);
            else if (pty_owns(ps.roles[i])) pty_event(a, ps.owners[i], ps.fds[i].revents);
            else exec_event(a, ps.owners[i], ps.roles[i], ps.fds[i].revents);
        }
        if (conn_idx >= 0 && ps.fds[conn_idx].revents) {
            short re = ps.fds[conn_idx].revents;
            if (re & (POLLIN | POLLHUP | POLLERR)) conn_readable(a);
            if (a->fd >= 0 && (re & POLLOUT)) conn_writable(a);
        }
        if (a->fd >= 0 && a->out.len) conn_writable(a);
    }
}

int main(int argc, char **argv) {
    static struct agent a = {.channel_path = NULL, .init_mode = 1, .fd = -1, .sigfd = -1, .etc_watch = -1, .id_links_stale = 1};
    if (parse_args(&a, argc, argv) < 0) return 2;
    if (ensure_std_fds() < 0) return 1;
    if (a.init_mode && init_system(&a) < 0) return 1;
    if (init_signals(&a) < 0) return 1;
    LOG_INFO("hutch-agent %s (protocol %u) channel %s%s", AGENT_VERSION, HP_VERSION, a.channel_path ? a.channel_path : "(virtio port " HP_PORT_NAME " or /dev/hvc0)",
             a.init_mode ? "" : " (no-init)");
    run(&a); /* never returns: as PID 1, returning would panic the guest */
    return 0;
}
