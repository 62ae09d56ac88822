/* Log macros: one line per event on stderr (or /dev/kmsg as PID 1). */
#ifndef HUTCH_LOG_H
#define HUTCH_LOG_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

void log_line(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_to_kmsg(void);

#define LOG_INFO(...) log_line("info", __VA_ARGS__)
#define LOG_WARN(...) log_line("warn", __VA_ARGS__)
/* Appends strerror(errno) of the failed call. */
#define LOG_ERRNO(what) log_line("error", "%s: %s", (what), strerror(errno))

#endif
