/* Key/value lists: sandbox envs, request envs, the exec environment. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "agent.h"

void env_free(struct env_list *e) {
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].key);
        free(e->items[i].value);
    }
    free(e->items);
    e->items = NULL;
    e->n = 0;
}

/* Sets or replaces key (copies both strings). */
int env_set(struct env_list *e, const char *key, const char *value) {
    char *v = strdup(value);
    if (!v) return -1;
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->items[i].key, key) == 0) {
            free(e->items[i].value);
            e->items[i].value = v;
            return 0;
        }
    }
    struct kv *items = realloc(e->items, (e->n + 1) * sizeof *items);
    char *k = strdup(key);
    if (!items || !k) {
        if (items) e->items = items;
        free(k);
        free(v);
        return -1;
    }
    e->items = items;
    e->items[e->n].key = k;
    e->items[e->n].value = v;
    e->n++;
    return 0;
}

/* kv list: u32 count, then count × (str key, str value). Keys must be
 * non-empty and free of '='. */
int env_read(struct rd *r, struct env_list *e) {
    uint32_t count = rd_u32(r);
    if (r->err || count > r->left / 8) return -1;
    for (uint32_t i = 0; i < count; i++) {
        char *k = rd_str(r), *v = rd_str(r);
        int bad = !k || !v || !*k || strchr(k, '=') || env_set(e, k, v);
        free(k);
        free(v);
        if (bad) return -1;
    }
    return 0;
}
