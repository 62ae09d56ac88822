/*
 * libhutch-ro-ram.so: preloaded into a jailed QEMU so that the RAM file it
 * maps copy-on-write (memory-backend-file,share=off: a template's `mem`, a
 * fork's `mem.base`) is opened read-only.
 *
 * Why: QEMU 7.2 opens a share=off RAM file O_RDWR although it only maps it
 * MAP_PRIVATE (8.2+ falls back to O_RDONLY by itself). That forced these
 * files, shared by every clone, to be writable by every VMM uid: one
 * compromised QEMU could rewrite the memory other sandboxes start from, and
 * the pages of running clones they had not touched yet. With this shim the
 * files are 0440 and each QEMU holds a read-only descriptor; MAP_PRIVATE
 * with PROT_WRITE needs no more than that.
 *
 * Only the exact paths in HUTCH_RO_RAM (one per line: a spare QEMU may be
 * adopted for a fork's `mem.base` or a template's `mem`) are affected, and
 * only an open for O_RDWR without O_CREAT/O_TRUNC (QEMU's file_ram_open);
 * everything else is passed through untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef int (*open_fn)(const char *, int, ...);
typedef int (*open2_fn)(const char *, int);

/* Whether `path` is one of the newline-separated paths in `list`. */
static int listed(const char *list, const char *path) {
    size_t n = strlen(path);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, path, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static int ro_flags(const char *path, int flags) {
    const char *ro = getenv("HUTCH_RO_RAM");
    if (ro == NULL || path == NULL || !listed(ro, path)) return flags;
    if ((flags & O_ACCMODE) != O_RDWR || (flags & (O_CREAT | O_TRUNC)) != 0) return flags;
    return (flags & ~O_ACCMODE) | O_RDONLY;
}

/* dlsym returns an object pointer; copy it into a function pointer. */
static void *next_symbol(const char *name) {
    return dlsym(RTLD_NEXT, name);
}

/* open/open64 through the next library's `name`; `ap` holds the mode when
 * the flags create a file. */
static int open_next(const char *name, const char *path, int flags, va_list ap) {
    open_fn fn;
    void *sym = next_symbol(name);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    memcpy(&fn, &sym, sizeof fn);
    return fn(path, ro_flags(path, flags), mode);
}

/* The two-argument fortified entry points (__open_2, __open64_2). */
static int open2_next(const char *name, const char *path, int flags) {
    open2_fn fn;
    void *sym = next_symbol(name);
    memcpy(&fn, &sym, sizeof fn);
    return fn(path, ro_flags(path, flags));
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int fd = open_next("open64", path, flags, ap);
    va_end(ap);
    return fd;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int fd = open_next("open", path, flags, ap);
    va_end(ap);
    return fd;
}

/* What _FORTIFY_SOURCE builds (Debian's QEMU) call for open() with variable flags. */
int __open64_2(const char *path, int flags) { return open2_next("__open64_2", path, flags); }

int __open_2(const char *path, int flags) { return open2_next("__open_2", path, flags); }
