#define _GNU_SOURCE
#include "netcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static int ctl_socket(void) { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); }

static int with_errno(int fd, int rc) {
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int net_up(const char *ifname) {
    struct ifreq ifr = {0};
    int fd = ctl_socket();
    if (fd < 0) return -1;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) return with_errno(fd, -1);
    if (ifr.ifr_flags & IFF_UP) return with_errno(fd, 0); /* as after every CONFIGURE but the first */
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return with_errno(fd, ioctl(fd, SIOCSIFFLAGS, &ifr));
}

/*
 * Sandboxes have IPv4 only (the host's bridge, firewall and egress rules
 * are IPv4). IPv6 stays on lo (::1) but is off on every other interface:
 * no link-local address is made, moved on a MAC change or announced, so a
 * clone's MAC and address change in CONFIGURE runs less kernel code (it
 * runs cold under TCG), and no IPv6 frame leaves a sandbox to its neighbours
 * on the bridge. `default` covers interfaces that appear later.
 */
void net_ipv4_only(void) {
    static const char *const knobs[] = {"/proc/sys/net/ipv6/conf/default/disable_ipv6",
                                        "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"};
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        int fd = open(knobs[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) continue; /* no IPv6 in this kernel, or no eth0 yet */
        if (write(fd, "1", 1) != 1) LOG_ERRNO(knobs[i]);
        close(fd);
    }
}

static int parse_mac(const char *s, unsigned char mac[6]) {
    unsigned v[6];
    if (!s || sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
    return 0;
}

/* Whether interface `name` has MAC `mac` (fd: an AF_INET datagram socket). */
static int has_mac(int fd, const char *name, const unsigned char mac[6]) {
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    return ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && memcmp(ifr.ifr_hwaddr.sa_data, mac, 6) == 0;
}

/*
 * After a snapshot restore the guest still has the snapshot's MAC (the
 * kernel read it at boot; the device state carries it). When no interface
 * has the requested MAC, give it to eth0: virtio-net passes the change to
 * the device (VIRTIO_NET_CTRL_MAC_ADDR_SET), which also updates QEMU's
 * receive filter, and takes it while up (IFF_LIVE_ADDR_CHANGE). A
 * malformed MAC changes nothing (eth0 is configured). Interfaces are looked
 * up by index with ioctls, not listed with a netlink dump: under TCG a
 * freshly restored VM runs every kernel path cold, and a dump of every
 * link's attributes is a long one.
 */
int net_apply_mac(const char *text, char ifname[IFNAMSIZ]) {
    unsigned char mac[6];
    snprintf(ifname, IFNAMSIZ, "eth0");
    if (parse_mac(text, mac) < 0) return 0;
    int fd = ctl_socket();
    if (fd < 0) return -1;
    int found = has_mac(fd, "eth0", mac);
    /* Indexes are small and dense in a VM; stop after a run of gaps. */
    for (int idx = 1, gaps = 0; !found && gaps < 8 && idx < 256; idx++) {
        struct ifreq ifr = {.ifr_ifindex = idx};
        if (ioctl(fd, SIOCGIFNAME, &ifr) < 0) {
            gaps++;
            continue;
        }
        gaps = 0;
        found = has_mac(fd, ifr.ifr_name, mac);
        if (found) snprintf(ifname, IFNAMSIZ, "%s", ifr.ifr_name);
    }
    int rc = 0;
    if (!found) {
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
        ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
        rc = ioctl(fd, SIOCSIFHWADDR, &ifr);
    }
    return with_errno(fd, rc);
}

static int set_addr(int fd, const char *ifname, unsigned long req, struct in_addr addr) {
    struct ifreq ifr = {0};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = addr};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    memcpy(&ifr.ifr_addr, &sin, sizeof sin);
    return ioctl(fd, req, &ifr);
}

int net_configure(const struct net_config *c, const char *ifname) {
    struct in_addr ip, gw, mask = {.s_addr = htonl(c->prefix ? 0xFFFFFFFFu << (32 - c->prefix) : 0)};
    if (inet_pton(AF_INET, c->ip, &ip) != 1 || inet_pton(AF_INET, c->gateway, &gw) != 1) {
        errno = EINVAL;
        return -1;
    }
    int fd = ctl_socket();
    if (fd < 0) return -1;
    if (set_addr(fd, ifname, SIOCSIFADDR, ip) < 0 || set_addr(fd, ifname, SIOCSIFNETMASK, mask) < 0)
        return with_errno(fd, -1);
    close(fd);
    if (net_up(ifname) < 0) return -1;

    /* Replace the default route (a restored clone may carry an old one). */
    struct rtentry rt = {0};
    struct sockaddr_in any = {.sin_family = AF_INET}, gsin = {.sin_family = AF_INET, .sin_addr = gw};
    memcpy(&rt.rt_dst, &any, sizeof any);
    memcpy(&rt.rt_genmask, &any, sizeof any);
    memcpy(&rt.rt_gateway, &gsin, sizeof gsin);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = (char *)ifname;
    fd = ctl_socket();
    if (fd < 0) return -1;
    struct rtentry del = {0};
    memcpy(&del.rt_dst, &any, sizeof any);
    memcpy(&del.rt_genmask, &any, sizeof any);
    del.rt_flags = RTF_UP;
    for (int i = 0; i < 16 && ioctl(fd, SIOCDELRT, &del) == 0; i++) {
    }
    if (ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST) return with_errno(fd, -1);
    close(fd);
    return 0;
}
