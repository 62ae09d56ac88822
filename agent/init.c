/* PID-1 duties: filesystems, signals, reaping. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "netcfg.h"

struct mnt {
    const char *src, *target, *type;
    unsigned long flags;
    const char *opts;
};

static const struct mnt mounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
};

/* Already mounted (EBUSY, or the same fs type is there) is fine. */
static int is_mounted(const char *target) {
    struct stat here, parent;
    char up[256];
    size_t len = strlen(target);
    if (len + 4 > sizeof up) return 0;
    memcpy(up, target, len);
    memcpy(up + len, "/..", 4);
    return stat(target, &here) == 0 && stat(up, &parent) == 0 && here.st_dev != parent.st_dev;
}

static int mount_all(void) {
    for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
        const struct mnt *m = &mounts[i];
        if (mkdir(m->target, 0755) < 0 && errno != EEXIST) LOG_ERRNO(m->target);
        if (is_mounted(m->target)) continue;
        if (mount(m->src, m->target, m->type, m->flags, m->opts) < 0 && errno != EBUSY) {
            LOG_ERRNO(m->target);
        }
    }
    if (symlink("pts/ptmx", "/dev/ptmx") < 0 && errno != EEXIST) LOG_ERRNO("/dev/ptmx");
    if (symlink("/proc/self/fd", "/dev/fd") < 0 && errno != EEXIST) LOG_ERRNO("/dev/fd");
    return 0;
}

int init_system(struct agent *a) {
    umask(022);
    if (chdir("/") < 0) LOG_ERRNO("chdir /");
    mount_all();
    log_to_kmsg();
    if (net_up("lo") < 0) LOG_ERRNO("lo up");
    net_ipv4_only();
    /* Up now, without an address: a template's clones then only change MAC
     * and address in their CONFIGURE (bringing virtio-net up, rings and
     * all, is ~15 ms of cold kernel code under TCG). It sends nothing
     * until it has an address (IPv4 only). */
    if (net_up("eth0") < 0 && errno != ENODEV) LOG_ERRNO("eth0 up");
    identity_files_init(a);
    if (getpid() == 1) LOG_INFO("running as PID 1");
    return 0;
}

/* SIGCHLD arrives on a signalfd; PID 1 ignores termination signals. */
int init_signals(struct agent *a) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
        LOG_ERRNO("sigprocmask");
        return -1;
    }
    a->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a->sigfd < 0) {
        LOG_ERRNO("signalfd");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (a->init_mode) {
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
    } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        /* Not PID 1: still adopt orphans so their zombies are reaped. */
        LOG_ERRNO("PR_SET_CHILD_SUBREAPER");
    }
    return 0;
}

void reap_children(struct agent *a) {
    struct signalfd_siginfo si;
    while (read(a->sigfd, &si, sizeof si) > 0) {
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        exec_reap(a, pid, status);
        pty_reap(a, pid, status);
    }
}
