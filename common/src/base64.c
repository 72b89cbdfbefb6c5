// base64 decoding (see base64.h).
#include "vmlet/base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int s_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

char *vmlet_base64_decode(const char *text)
{
    return vmlet_base64_decode_len(text, NULL);
}

char *vmlet_base64_decode_len(const char *text, size_t *len)
{
    char *out = malloc(strlen(text) / 4 * 3 + 4);
    if (!out)
        return NULL;
    uint32_t acc = 0;
    size_t n = 0, bits = 0, pad = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        int v = *p == '=' ? 0 : s_b64_value(*p);
        if (v < 0 || (pad && *p != '=')) {
            free(out);
            return NULL;
        }
        pad += *p == '=';
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)(acc >> bits & 0xff);
        }
    }
    n = n >= pad ? n - pad : 0;
    if (pad > 2 || bits >= 6) { // a lone trailing character cannot be a byte
        free(out);
        return NULL;
    }
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

