/*
 * hutch-jailer: puts one QEMU into its jail and execs it, in one process
 * (the pid stays QEMU's), in the spirit of Firecracker's jailer. It replaces
 * a chain of a dozen execs (sh, ip netns exec, sh + mkdir/mknod/chown/ln/
 * mount, prlimit, chroot, setpriv) that cost 70-280 ms per launch under load.
 *
 *   hutch-jailer [--cgroup DIR]... [--netns NAME]
 *     [--tap NAME[,NAME]...:BRIDGE[:ALIAS] --tap-fd N] --root DIR --fstab FILE
 *     [--link NAME=TARGET]... [--dev PATH]... [--node PATH:MAJOR:MINOR]...
 *     --uid N --gid N --nofile N --nproc N -- PROGRAM ARG...
 *
 * In order: join the cgroups; enter the network namespace; create the VM's
 * tap there and keep it open at fd N (tap.c); a private mount
 * namespace (slave to the host's); a tmpfs on --root with /dev, empty
 * files for the bound devices (--dev), device nodes of its own owned by the
 * uid (--node), the symlinks (--link); the bind mounts of --fstab (lines
 * "SRC DST none OPTS 0 0", options bind, ro, nosuid, nodev, X-mount.mkdir;
 * octal escapes); rlimits (nofile, nproc, no core); chroot; no
 * inheritable or ambient capabilities, an empty bounding set; no groups,
 * the gid, the uid; no_new_privs; exec PROGRAM (looked up in PATH).
 * Any failure: one line "hutch-jailer: STEP: ERROR" on stderr, exit 126.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "jailer.h"

#define MAX_ITEMS 64

void die(const char *fmt, ...) {
    int e = errno;
    va_list ap;
    fputs("hutch-jailer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(e));
    exit(126);
}

void usage(const char *why) {
    fprintf(stderr, "hutch-jailer: %s\n", why);
    exit(126);
}

static long num(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) usage(what);
    return v;
}

/* mkdir -p */
static void mkdirs(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) usage("path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, mode) < 0 && errno != EEXIST) die("mkdir %s", buf);
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST) die("mkdir %s", buf);
}

static void join_path(char *out, const char *root, const char *p) {
    if (snprintf(out, PATH_MAX, "%s/%s", root, p[0] == '/' ? p + 1 : p) >= PATH_MAX) usage("path too long");
}

/* fstab field: \NNN octal escapes */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static int has_opt(const char *opts, const char *name) {
    size_t n = strlen(name);
    for (const char *p = opts; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static void mount_fstab(const char *fstab) {
    FILE *f = fopen(fstab, "re");
    if (!f) die("open %s", fstab);
    char line[3 * PATH_MAX];
    while (fgets(line, sizeof line, f)) {
        char *save, *src = strtok_r(line, " \t\n", &save), *dst = strtok_r(NULL, " \t\n", &save);
        strtok_r(NULL, " \t\n", &save); /* type */
        char *opts = strtok_r(NULL, " \t\n", &save);
        if (!src || src[0] == '#') continue;
        if (!dst || !opts || !has_opt(opts, "bind")) usage("fstab: only bind mounts");
        unescape(src);
        unescape(dst);
        if (has_opt(opts, "X-mount.mkdir")) mkdirs(dst, 0755);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0) die("bind %s on %s", src, dst);
        unsigned long fl = (has_opt(opts, "ro") ? MS_RDONLY : 0) | (has_opt(opts, "nosuid") ? MS_NOSUID : 0) |
                           (has_opt(opts, "nodev") ? MS_NODEV : 0);
        if (fl && mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | fl, NULL) < 0) die("remount %s", dst);
    }
    fclose(f);
}

static void drop_caps(void) {
    for (int c = 0; c <= 63; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die("drop capability %d from the bounding set", c);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die("clear ambient capabilities");
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0) die("capget");
    d[0].inheritable = d[1].inheritable = 0;
    if (syscall(SYS_capset, &h, d) < 0) die("capset");
}

int main(int argc, char **argv) {
    const char *cgroups[MAX_ITEMS], *links[MAX_ITEMS], *devs[MAX_ITEMS], *nodes[MAX_ITEMS];
    int ncg = 0, nlinks = 0, ndevs = 0, nnodes = 0;
    const char *netns = NULL, *root = NULL, *fstab = NULL, *tap = NULL;
    long uid = -1, gid = -1, nofile = -1, nproc = -1, tap_fd = -1;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc) usage("option without value");
        const char *v = argv[++i];
#define LIST(name, arr, n) \
    if (strcmp(a, name) == 0) { \
        if (n >= MAX_ITEMS) usage("too many " name); \
        arr[n++] = v; \
        continue; \
    }
        LIST("--cgroup", cgroups, ncg)
        LIST("--link", links, nlinks)
        LIST("--dev", devs, ndevs)
        LIST("--node", nodes, nnodes)
#undef LIST
        if (strcmp(a, "--netns") == 0) netns = v;
        else if (strcmp(a, "--tap") == 0) tap = v;
        else if (strcmp(a, "--tap-fd") == 0) tap_fd = num(v, "bad --tap-fd");
        else if (strcmp(a, "--root") == 0) root = v;
        else if (strcmp(a, "--fstab") == 0) fstab = v;
        else if (strcmp(a, "--uid") == 0) uid = num(v, "bad --uid");
        else if (strcmp(a, "--gid") == 0) gid = num(v, "bad --gid");
        else if (strcmp(a, "--nofile") == 0) nofile = num(v, "bad --nofile");
        else if (strcmp(a, "--nproc") == 0) nproc = num(v, "bad --nproc");
        else usage("unknown option");
    }
    if (i >= argc) usage("no program");
    if (!root || !fstab || uid <= 0 || gid <= 0 || nofile < 0 || nproc < 0) usage("--root, --fstab, --uid, --gid, --nofile, --nproc are required");
    if (!tap != (tap_fd < 0)) usage("--tap and --tap-fd go together");

    char pid[32], path[PATH_MAX];
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    for (int c = 0; c < ncg; c++) {
        join_path(path, cgroups[c], "cgroup.procs");
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, pid, strlen(pid)) < 0) die("join cgroup %s", cgroups[c]);
        close(fd);
    }
    if (netns) {
        join_path(path, "/run/netns", netns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) die("enter netns %s", netns);
        close(fd);
    }
    /* In the netns, with every capability still: QEMU only inherits the open tap. */
    if (tap) make_tap(tap, (int)tap_fd);
    if (unshare(CLONE_NEWNS) < 0) die("unshare the mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("make / a slave");
    if (mount("hutch-jail", root, "tmpfs", MS_NOSUID, "mode=0755,size=1m") < 0) die("mount tmpfs on %s", root);
    join_path(path, root, "/dev");
    mkdirs(path, 0755);
    for (int d = 0; d < ndevs; d++) {
        join_path(path, root, devs[d]);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) die("create %s", path);
        close(fd);
    }
    for (int n = 0; n < nnodes; n++) {
        char spec[PATH_MAX];
        snprintf(spec, sizeof spec, "%s", nodes[n]);
        char *minor = strrchr(spec, ':');
        if (!minor) usage("--node PATH:MAJOR:MINOR");
        *minor++ = 0;
        char *major = strrchr(spec, ':');
        if (!major) usage("--node PATH:MAJOR:MINOR");
        *major++ = 0;
        join_path(path, root, spec);
        *strrchr(path, '/') = 0; /* its directory (/dev/net for a tun node) */
        mkdirs(path, 0755);
        join_path(path, root, spec);
        if (mknod(path, S_IFCHR | 0600, makedev(num(major, "bad major"), num(minor, "bad minor"))) < 0) die("mknod %s", path);
        if (chown(path, (uid_t)uid, (gid_t)gid) < 0) die("chown %s", path);
    }
    for (int l = 0; l < nlinks; l++) {
        char name[PATH_MAX];
        snprintf(name, sizeof name, "%s", links[l]);
        char *target = strchr(name, '=');
        if (!target) usage("--link NAME=TARGET");
        *target++ = 0;
        join_path(path, root, name);
        if (symlink(target, path) < 0) die("symlink %s", path);
    }
    mount_fstab(fstab);

    struct rlimit rl = {(rlim_t)nofile, (rlim_t)nofile};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("RLIMIT_NOFILE");
    rl.rlim_cur = rl.rlim_max = (rlim_t)nproc;
    if (setrlimit(RLIMIT_NPROC, &rl) < 0) die("RLIMIT_NPROC");
    rl.rlim_cur = rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) < 0) die("RLIMIT_CORE");

    if (chroot(root) < 0) die("chroot %s", root);
    if (chdir("/") < 0) die("chdir /");
    drop_caps();
    if (setgroups(0, NULL) < 0) die("setgroups");
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setresgid");
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setresuid");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
    execvp(argv[i], argv + i);
    die("exec %s", argv[i]);
}
