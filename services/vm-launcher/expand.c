// $(VAR) expansion (see expand.h), a transcription of the rules in
// Kubernetes' third_party/forked/golang/expansion.
#include "expand.h"

#include "vmlet/xalloc.h"

#include <string.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void s_put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = vmlet_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

char *expand_vars(const char *text, expand_lookup_fn lookup, void *ctx)
{
    buf_t out = {0};
    s_put(&out, "", 0);
    const char *p = text;
    while (*p) {
        const char *dollar = strchr(p, '$');
        if (!dollar || !dollar[1]) { // no "$", or a trailing one: literal
            s_put(&out, p, strlen(p));
            break;
        }
        s_put(&out, p, (size_t)(dollar - p));
        const char *next = dollar + 1;
        if (*next == '$') { // "$$": an escaped "$"
            s_put(&out, "$", 1);
            p = next + 1;
        } else if (*next == '(') {
            const char *close = strchr(next, ')');
            if (!close) { // "$(" never closed: kept, and scanning goes on after it
                s_put(&out, "$(", 2);
                p = next + 1;
                continue;
            }
            const char *name = next + 1;
            size_t name_len = (size_t)(close - name);
            const char *value = lookup(ctx, name, name_len);
            if (value)
                s_put(&out, value, strlen(value));
            else
                s_put(&out, dollar, (size_t)(close + 1 - dollar)); // undefined: as written
            p = close + 1;
        } else { // "$x": not a reference
            s_put(&out, dollar, 2);
            p = next + 1;
        }
    }
    return out.data;
}
