/* Interface address and default route, with plain ioctls (no netlink). */
#ifndef HUTCH_NETCFG_H
#define HUTCH_NETCFG_H

#include <stdint.h>

struct net_config {
    char *ip;
    uint8_t prefix;
    char *gateway;
    char *mac; /* picks the interface; eth0 when no interface has it */
    char **dns;
};

int net_up(const char *ifname);
int net_configure(const struct net_config *c);

#endif
