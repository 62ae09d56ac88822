/* Interface address and default route, with plain ioctls (no netlink). */
#ifndef HUTCH_NETCFG_H
#define HUTCH_NETCFG_H

#include <net/if.h>
#include <stdint.h>

struct net_config {
    char *ip;
    uint8_t prefix;
    char *gateway;
    char *mac; /* picks the interface; eth0 when no interface has it */
    char **dns;
};

int net_up(const char *ifname);
/* IPv6 off on every interface but lo (see netcfg.c). */
void net_ipv4_only(void);
/* The interface that has this MAC; when none has it, eth0 gets it (ifname: "eth0"). */
int net_apply_mac(const char *mac, char ifname[IFNAMSIZ]);
/* Address, netmask, up, default route on ifname (from net_apply_mac). */
int net_configure(const struct net_config *c, const char *ifname);

#endif
