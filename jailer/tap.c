/*
 * The VM's tap, made by hutch-jailer itself instead of two `ip` processes
 * (40-85 ms per launch): after the jailer entered the netns, still root.
 *
 *   --tap NAME[,NAME]...:BRIDGE[:ALIAS] --tap-fd N
 *
 * /dev/net/tun, TUNSETIFF IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (as QEMU's own
 * tap_open) under the first free NAME; one RTM_NEWLINK puts it up, on
 * BRIDGE, with ALIAS (the sandbox id, read back by HostNetwork.list); the fd
 * moves to N without close-on-exec, for QEMU's `-netdev tap,fd=N`. The tap
 * is not persistent: it goes with the last process holding it (QEMU), so a
 * VM that dies leaves none, and QEMU needs neither /dev/net/tun nor
 * CAP_NET_ADMIN. A NAME is taken when a live process holds a tap of that
 * name (EBUSY): the next one is tried. A leftover persistent tap of that
 * name that nobody holds (`ip tuntap add`) is removed and made anew.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "jailer.h"

/* TUNSETIFF on a fresh /dev/net/tun fd (close-on-exec); -1 and errno on failure. */
static int tun_set(const char *name, int excl) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (excl ? IFF_TUN_EXCL : 0);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) == 0) return fd;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* A new tap NAME; -1 and errno (EBUSY: a live process holds one of that name). */
static int tap_new(const char *name) {
    int fd = tun_set(name, 1);
    if (fd >= 0 || errno != EBUSY) return fd;
    /* The name exists. Attaching to it works only if nobody holds it: a leftover persistent tap. */
    int old = tun_set(name, 0);
    if (old < 0) return -1;
    if (ioctl(old, TUNSETPERSIST, 0) < 0) die("tap %s: clear persist", name);
    close(old); /* its last holder: the tap is gone */
    return tun_set(name, 1);
}

static void nl_attr(struct nlmsghdr *n, size_t cap, unsigned short type, const void *data, size_t len) {
    size_t at = NLMSG_ALIGN(n->nlmsg_len);
    if (at + RTA_SPACE(len) > cap) usage("--tap: alias too long");
    struct rtattr *a = (struct rtattr *)((char *)n + at);
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    n->nlmsg_len = (uint32_t)(at + RTA_ALIGN(a->rta_len));
}

/* One RTM_NEWLINK, as `ip link set NAME master BRIDGE alias ALIAS up`: waits for the kernel's answer. */
static void link_up(const char *name, int index, const char *bridge, int master, const char *alias) {
    struct {
        struct nlmsghdr n;
        struct ifinfomsg i;
        char attrs[512];
    } req;
    memset(&req, 0, sizeof req);
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof req.i);
    req.n.nlmsg_type = RTM_NEWLINK;
    req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.n.nlmsg_seq = 1;
    req.i.ifi_family = AF_UNSPEC;
    req.i.ifi_index = index;
    req.i.ifi_flags = IFF_UP;
    req.i.ifi_change = IFF_UP;
    uint32_t m = (uint32_t)master;
    nl_attr(&req.n, sizeof req, IFLA_MASTER, &m, sizeof m);
    if (alias && *alias) nl_attr(&req.n, sizeof req, IFLA_IFALIAS, alias, strlen(alias));
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) die("netlink socket");
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    if (sendto(s, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) die("tap %s: netlink send", name);
    char buf[4096];
    ssize_t got = recv(s, buf, sizeof buf, 0);
    if (got < 0) die("tap %s: netlink receive", name);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (size_t)got) || h->nlmsg_type != NLMSG_ERROR) {
        errno = EPROTO;
        die("tap %s: netlink answer", name);
    }
    int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    if (err) {
        errno = -err;
        die("tap %s: up on bridge %s", name, bridge);
    }
    close(s);
}

void make_tap(const char *spec, int at) {
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf) usage("--tap too long");
    char *bridge = strchr(buf, ':');
    if (!bridge || bridge == buf || !bridge[1]) usage("--tap NAME[,NAME]...:BRIDGE[:ALIAS]");
    *bridge++ = 0;
    char *alias = strchr(bridge, ':');
    if (alias) *alias++ = 0;
    /* fd `at` must be free: QEMU finds the tap there and nothing else. */
    if (at <= 2 || fcntl(at, F_GETFD) >= 0) usage("--tap-fd: not a free fd above 2");
    int master = (int)if_nametoindex(bridge);
    if (!master) die("bridge %s", bridge);
    int fd = -1;
    char *save, *name;
    for (name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (strlen(name) >= IFNAMSIZ) usage("--tap: name too long");
        fd = tap_new(name);
        if (fd >= 0) break;
        if (errno != EBUSY) die("tap %s", name);
    }
    if (fd < 0) {
        errno = EBUSY;
        die("tap: every name of %s is taken", spec);
    }
    int index = (int)if_nametoindex(name);
    if (!index) die("tap %s: index", name);
    link_up(name, index, bridge, master, alias);
    /* Kept open across exec: dup2 leaves the copy without close-on-exec. */
    if (fd == at) {
        if (fcntl(fd, F_SETFD, 0) < 0) die("tap %s: keep fd %d open", name, at);
    } else {
        if (dup2(fd, at) < 0) die("tap %s: move to fd %d", name, at);
        close(fd);
    }
}
