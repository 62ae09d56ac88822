/* hutch-jailer: what jailer.c and tap.c share. */
#ifndef HUTCH_JAILER_H
#define HUTCH_JAILER_H

/* One line "hutch-jailer: MSG: strerror(errno)" on stderr, exit 126. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* One line "hutch-jailer: WHY" on stderr, exit 126. */
void usage(const char *why) __attribute__((noreturn));

/*
 * Creates the VM's tap in the current network namespace and leaves it open
 * at `fd` (not close-on-exec) for QEMU's `-netdev tap,fd=N`. `spec` is
 * "NAME[,NAME]...:BRIDGE[:ALIAS]" (see tap.c).
 */
void make_tap(const char *spec, int fd);

#endif
