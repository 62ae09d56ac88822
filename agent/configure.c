/*
 * CONFIGURE: the sandbox's identity. Sent after every HELLO of a new host
 * and again after a snapshot restore; everything here is idempotent.
 * Payload: str hostname, u8 has_net [str ip, u8 prefix, str gateway,
 * str mac, strlist dns], kv envs, strlist ssh keys, bytes rng seed,
 * u64 wall clock ms; from protocol 3 on, u8 keep flags (HP_KEEP_*).
 *
 * Under TCG every kernel path a freshly restored VM runs for the first time
 * is translated anew, so what is already as asked is left alone: a file
 * with the very content is not rewritten (reading it is far cheaper than a
 * temp file + rename through overlayfs), no authorized_keys is made for no
 * keys. lo is up since boot (init.c).
 *
 * The per-sandbox files /etc/hostname, /etc/hosts and /etc/resolv.conf are
 * links into /run/hutch (tmpfs) in Hutch's images: written there, they cost
 * no journal or overlay work (measured under TCG: a clone's first write to
 * the disk took 15-90 ms, a hand-over's 4-7 ms; to /run 1-3 ms and < 1 ms).
 * A file the user put in place of such a link is written where it is. Which
 * ones are links is read at boot and again only after /etc changed (an
 * inotify watch, drained at each CONFIGURE): a clone's first look into /etc
 * through overlayfs took 26-36 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "netcfg.h"

struct config {
    char *hostname;
    int has_net;
    struct net_config net;
    struct env_list envs;
    char **keys;
    uint32_t nkeys;
    const uint8_t *seed;
    uint32_t seed_len;
    uint64_t clock_ms;
    uint8_t keep; /* HP_KEEP_* */
};

static char **read_strlist(struct rd *r, uint32_t *count) {
    *count = rd_u32(r);
    if (r->err || *count > r->left / 4) {
        r->err = 1;
        return NULL;
    }
    char **v = calloc((size_t)*count + 1, sizeof *v);
    for (uint32_t i = 0; v && i < *count; i++)
        if (!(v[i] = rd_str(r))) break;
    if (!v) r->err = 1;
    return v;
}

static void free_list(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

static void config_free(struct config *c) {
    free(c->hostname);
    free(c->net.ip);
    free(c->net.gateway);
    free(c->net.mac);
    free_list(c->net.dns);
    free_list(c->keys);
    env_free(&c->envs);
}

/* 1 when path is a regular file (not a symlink) of ours with this mode and content. */
static int same_file(const char *path, const char *text, size_t len, mode_t mode) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    char buf[4096];
    int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
               st.st_uid == geteuid() && st.st_gid == getegid() && (size_t)st.st_size == len;
    for (size_t off = 0; same && off < len;) {
        ssize_t n = read(fd, buf, len - off < sizeof buf ? len - off : sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        same = n > 0 && memcmp(buf, text + off, (size_t)n) == 0;
        if (same) off += (size_t)n;
    }
    close(fd);
    return same;
}

/* Writes a whole file through a temp file + rename, unless it is so already. */
static int write_file(const char *path, const char *text, mode_t mode) {
    char tmp[4096];
    if (same_file(path, text, strlen(text), mode)) return 0;
    snprintf(tmp, sizeof tmp, "%s.hutch-tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int rc = (w == (ssize_t)len && fchmod(fd, mode) == 0) ? 0 : -1;
    if (close(fd) < 0) rc = -1;
    if (rc == 0) rc = rename(tmp, path);
    if (rc < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    return rc;
}

/* The identity files, ID_* their index (bit) in agent.id_links. */
static const char *const ID_FILES[] = {"hostname", "hosts", "resolv.conf"};
enum { ID_HOSTNAME, ID_HOSTS, ID_RESOLV, ID_COUNT };

/* Reads the pending /etc events; any about an identity file (or a lost
 * watch, an overflow) makes id_links stale. */
static void drain_etc_watch(struct agent *a) {
    _Alignas(struct inotify_event) char buf[4096];
    ssize_t n;
    while (a->etc_watch >= 0 && (n = read(a->etc_watch, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
                close(a->etc_watch); /* /etc itself went: look each time from now on */
                a->etc_watch = -1;
            }
            if (ev->mask & IN_Q_OVERFLOW) a->id_links_stale = 1;
            for (int i = 0; ev->len && i < ID_COUNT; i++)
                if (strcmp(ev->name, ID_FILES[i]) == 0) a->id_links_stale = 1;
        }
    }
    if (a->etc_watch < 0) a->id_links_stale = 1;
}

/* Which identity files are the image's links into HUTCH_RUN_DIR, read again if stale. */
static unsigned identity_links(struct agent *a) {
    drain_etc_watch(a);
    if (!a->id_links_stale) return a->id_links;
    a->id_links = 0;
    for (int i = 0; i < ID_COUNT; i++) {
        char etc[64], run[64], target[64];
        snprintf(etc, sizeof etc, "/etc/%s", ID_FILES[i]);
        snprintf(run, sizeof run, "%s/%s", HUTCH_RUN_DIR, ID_FILES[i]);
        ssize_t n = readlink(etc, target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strcmp(target, run) == 0)) a->id_links |= 1u << i;
    }
    a->id_links_stale = a->etc_watch < 0;
    return a->id_links;
}

void identity_files_init(struct agent *a) {
    a->etc_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (a->etc_watch >= 0 &&
        inotify_add_watch(a->etc_watch, "/etc", IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0) {
        LOG_ERRNO("inotify /etc");
        close(a->etc_watch);
        a->etc_watch = -1;
    }
    a->id_links_stale = 1;
    identity_links(a); /* now, while booting: a template's clones start knowing */
}

/* Writes identity file ID_FILES[id]: to HUTCH_RUN_DIR while /etc's entry is
 * the image's link there, else to /etc itself. */
static int write_identity_file(struct agent *a, int id, const char *text) {
    char path[64];
    int linked = identity_links(a) & (1u << id);
    snprintf(path, sizeof path, "%s/%s", linked ? HUTCH_RUN_DIR : "/etc", ID_FILES[id]);
    return write_file(path, text, 0644);
}

static int apply_hostname(struct agent *a, const char *name) {
    char hosts[1024];
    if (sethostname(name, strlen(name)) < 0) return -1;
    snprintf(hosts, sizeof hosts, "%s\n", name);
    if (write_identity_file(a, ID_HOSTNAME, hosts) < 0) return -1;
    snprintf(hosts, sizeof hosts,
             "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", name);
    return write_identity_file(a, ID_HOSTS, hosts);
}

static int apply_resolv(struct agent *a, char **dns, uint32_t n) {
    struct buf b = {0};
    char line[300];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "nameserver %s\n", dns[i]);
        if (buf_append(&b, line, strlen(line))) return -1;
    }
    if (buf_append(&b, "", 1)) return -1;
    int rc = write_identity_file(a, ID_RESOLV, (char *)b.data);
    buf_free(&b);
    return rc;
}

static int apply_keys(char **keys, uint32_t n) {
    struct buf b = {0};
    struct stat st;
    /* No keys and no file: nothing to write (not even /root/.ssh). */
    if (n == 0 && lstat("/root/.ssh/authorized_keys", &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) return 0;
    int dir_ok = stat("/root/.ssh", &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700;
    if (!dir_ok && mkdir("/root", 0700) < 0 && errno != EEXIST) return -1;
    if (!dir_ok && mkdir("/root/.ssh", 0700) < 0 && errno != EEXIST) return -1;
    if (!dir_ok && chmod("/root/.ssh", 0700) < 0) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (buf_append(&b, keys[i], strlen(keys[i])) || buf_append(&b, "\n", 1)) return -1;
    if (buf_append(&b, "", 1)) return -1;
    int rc = write_file("/root/.ssh/authorized_keys", (char *)b.data, 0600);
    buf_free(&b);
    return rc;
}

static int apply_seed(const uint8_t *seed, uint32_t len) {
    struct rand_pool_info *info = malloc(sizeof *info + len);
    if (!info) return -1;
    info->entropy_count = (int)(len * 8);
    info->buf_size = (int)len;
    memcpy(info->buf, seed, len);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : ioctl(fd, RNDADDENTROPY, info);
    /* An initialised CRNG takes credited entropy in only on its reseed
     * timer (up to 60 s): clones of one snapshot would read the same bytes
     * until then. Reseed now so this seed is used at once. */
    if (rc == 0) rc = ioctl(fd, RNDRESEEDCRNG);
    if (fd >= 0) close(fd);
    free(info);
    return rc;
}

static int apply_clock(uint64_t ms) {
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    return clock_settime(CLOCK_REALTIME, &ts);
}

void handle_configure(struct agent *a, uint32_t chan, struct rd *r) {
    struct config c = {0};
    uint32_t ndns = 0;
    c.hostname = rd_str(r);
    c.has_net = rd_u8(r);
    if (c.has_net) {
        c.net.ip = rd_str(r);
        c.net.prefix = rd_u8(r);
        c.net.gateway = rd_str(r);
        c.net.mac = rd_str(r);
        c.net.dns = read_strlist(r, &ndns);
    }
    int bad = r->err || env_read(r, &c.envs) < 0;
    if (!bad) {
        c.keys = read_strlist(r, &c.nkeys);
        c.seed = rd_bytes(r, &c.seed_len);
        c.clock_ms = rd_u64(r);
        if (a->proto >= HP_VERSION_CONFIGURE_KEEP) c.keep = rd_u8(r);
        bad = rd_done(r) || !c.hostname || c.has_net > 1 || (c.has_net && c.net.prefix > 32);
    }
    if (bad) {
        conn_send_error(a, chan, EINVAL, "bad CONFIGURE");
        config_free(&c);
        return;
    }
    if (!(c.keep & HP_KEEP_ENVS)) {
        env_free(&a->envs);
        a->envs = c.envs;
        c.envs = (struct env_list){0};
    }

    const char *failed = NULL;
    int err = 0;
#define STEP(what, call)                         \
    if ((call) < 0 && !failed) {                 \
        err = errno;                             \
        failed = what;                           \
        log_line("error", "configure %s: %s", what, strerror(err)); \
    }
    if (a->init_mode) {
        if (c.seed_len) STEP("rng seed", apply_seed(c.seed, c.seed_len));
        if (c.clock_ms) STEP("clock", apply_clock(c.clock_ms));
        if (*c.hostname) STEP("hostname", apply_hostname(a, c.hostname));
        if (c.has_net) {
            char ifname[IFNAMSIZ];
            STEP("mac", net_apply_mac(c.net.mac, ifname));
            STEP("network", net_configure(&c.net, ifname));
            STEP("resolv.conf", apply_resolv(a, c.net.dns, ndns));
        }
        if (!(c.keep & HP_KEEP_KEYS)) STEP("ssh keys", apply_keys(c.keys, c.nkeys));
    }
#undef STEP
    if (failed) {
        char msg[256];
        snprintf(msg, sizeof msg, "configure %s: %s", failed, strerror(err));
        conn_send_error(a, chan, err, msg);
    } else {
        conn_send_ok(a, chan);
    }
    config_free(&c);
}
