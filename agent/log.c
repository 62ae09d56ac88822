#define _GNU_SOURCE
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

static int log_fd = 2;

/* As PID 1 the console may be gone; the kernel log always works. */
void log_to_kmsg(void) {
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) log_fd = fd;
}

void log_line(const char *level, const char *fmt, ...) {
    char line[512];
    int saved = errno;
    int n = snprintf(line, sizeof line, "hutch-agent: %s: ", level);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
    errno = saved;
}
