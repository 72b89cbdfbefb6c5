// SPDY/3 header blocks: name/value encoding and zlib with the SPDY
// dictionary (see spdy_headers.h).
#include "spdy_headers.h"

#include "vmlet/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct spdy_zctx {
    z_stream def, inf;
};

void spdy_hdrs_free(spdy_hdrs_t *h)
{
    free(h->v);
    free(h->store);
    memset(h, 0, sizeof *h);
}

// --- the name/value block ---

static void s_put32(spdy_buf_t *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    spdy_buf_add(b, p, 4);
}

static bool s_name_ok(const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((name[i] >= 'A' && name[i] <= 'Z') || name[i] == '\0')
            return false;
    return true;
}

int spdy_nv_build(const vmlet_spdy_header_t *h, size_t n, spdy_buf_t *out, vmlet_err_t *err)
{
    s_put32(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        size_t nlen = strlen(h[i].name);
        if (!s_name_ok(h[i].name, nlen))
            return vmlet_err_set(err, "header %zu \"%s\": SPDY names are non-empty lower case", i,
                                 h[i].name);
        s_put32(out, (uint32_t)nlen);
        spdy_buf_add(out, h[i].name, nlen);
        s_put32(out, (uint32_t)h[i].value_len);
        spdy_buf_add(out, h[i].value, h[i].value_len);
    }
    return 0;
}

// A value may hold several values joined by NUL, but none of them empty.
static bool s_value_ok(const uint8_t *v, size_t len)
{
    if (len == 0)
        return true;
    if (v[0] == 0 || v[len - 1] == 0)
        return false;
    for (size_t i = 1; i < len; i++)
        if (v[i] == 0 && v[i - 1] == 0)
            return false;
    return true;
}

// Reads a 32-bit length and that many bytes at *pos; false if they overrun.
static bool s_take(const uint8_t *raw, size_t len, size_t *pos, const uint8_t **s, size_t *slen)
{
    if (len - *pos < 4)
        return false;
    uint32_t n = spdy_get32(raw + *pos);
    *pos += 4;
    if (n > len - *pos)
        return false;
    *s = raw + *pos;
    *slen = n;
    *pos += n;
    return true;
}

int spdy_nv_parse(const uint8_t *raw, size_t len, size_t max_pairs, spdy_hdrs_t *out,
                  vmlet_err_t *err)
{
    memset(out, 0, sizeof *out);
    if (len < 4)
        return vmlet_err_set(err, "header block of %zu bytes has no count", len);
    uint32_t count = spdy_get32(raw);
    // Each pair needs 8 length bytes: a larger count is a lie, refuse it
    // before allocating for it.
    if (count > (len - 4) / 8 || count > max_pairs)
        return vmlet_err_set(err, "header block claims %u pairs in %zu bytes (limit %zu)", count,
                             len, max_pairs);
    out->v = vmlet_xcalloc(count ? count : 1, sizeof *out->v);
    out->store = vmlet_xmalloc(len + 2 * (size_t)count); // copies plus their NULs
    char *at = out->store;
    size_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *name, *value;
        size_t nlen, vlen;
        if (!s_take(raw, len, &pos, &name, &nlen) || !s_take(raw, len, &pos, &value, &vlen)) {
            spdy_hdrs_free(out);
            return vmlet_err_set(err, "header %u overruns the block", i);
        }
        if (!s_name_ok((const char *)name, nlen) || !s_value_ok(value, vlen)) {
            spdy_hdrs_free(out);
            return vmlet_err_set(err, "header %u: empty or upper-case name or empty value", i);
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strlen(out->v[j].name) == nlen && memcmp(out->v[j].name, name, nlen) == 0) {
                spdy_hdrs_free(out);
                return vmlet_err_set(err, "header \"%.*s\" appears twice", (int)nlen, name);
            }
        }
        out->v[i].name = at;
        memcpy(at, name, nlen);
        at[nlen] = '\0';
        at += nlen + 1;
        out->v[i].value = at;
        out->v[i].value_len = vlen;
        if (vlen)
            memcpy(at, value, vlen);
        at[vlen] = '\0';
        at += vlen + 1;
        out->n = i + 1;
    }
    if (pos != len) {
        spdy_hdrs_free(out);
        return vmlet_err_set(err, "%zu bytes after the last header", len - pos);
    }
    return 0;
}

// --- zlib ---

spdy_zctx_t *spdy_z_new(vmlet_err_t *err)
{
    spdy_zctx_t *z = vmlet_xcalloc(1, sizeof *z);
    if (deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        free(z);
        vmlet_err_set(err, "zlib deflateInit2 failed");
        return NULL;
    }
    if (deflateSetDictionary(&z->def, spdy_dictionary, SPDY_DICTIONARY_LEN) != Z_OK ||
        inflateInit(&z->inf) != Z_OK) {
        deflateEnd(&z->def);
        free(z);
        vmlet_err_set(err, "zlib dictionary or inflateInit failed");
        return NULL;
    }
    return z;
}

void spdy_z_destroy(spdy_zctx_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    deflateEnd(&(*self_p)->def);
    inflateEnd(&(*self_p)->inf);
    free(*self_p);
    *self_p = NULL;
}

int spdy_z_deflate(spdy_zctx_t *z, const uint8_t *raw, size_t len, spdy_buf_t *out,
                   vmlet_err_t *err)
{
    z->def.next_in = (Bytef *)raw; // zlib's API is not const; it does not write
    z->def.avail_in = (uInt)len;
    // Z_SYNC_FLUSH until deflate leaves output room unused: then all input
    // is compressed and flushed to a byte boundary.
    for (;;) {
        size_t room = deflateBound(&z->def, z->def.avail_in) + 16;
        z->def.next_out = spdy_buf_reserve(out, room);
        z->def.avail_out = (uInt)room;
        int rc = deflate(&z->def, Z_SYNC_FLUSH);
        out->len += room - z->def.avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return vmlet_err_set(err, "zlib deflate: %d", rc);
        if (z->def.avail_in == 0 && z->def.avail_out != 0)
            return 0;
    }
}

int spdy_z_encode(spdy_zctx_t *z, const vmlet_spdy_header_t *h, size_t n, spdy_buf_t *out,
                  vmlet_err_t *err)
{
    spdy_buf_t raw = {0};
    int rc = spdy_nv_build(h, n, &raw, err);
    if (rc == 0)
        rc = spdy_z_deflate(z, raw.p, raw.len, out, err);
    spdy_buf_free(&raw);
    return rc;
}

int spdy_z_inflate(spdy_zctx_t *z, const uint8_t *in, size_t len, size_t max, spdy_buf_t *raw,
                   vmlet_err_t *err)
{
    raw->off = raw->len = 0;
    z->inf.next_in = (Bytef *)in; // zlib's API is not const; it does not write
    z->inf.avail_in = (uInt)len;
    for (;;) {
        // Checked before each step, so a bomb costs at most max + 4 KiB.
        if (raw->len > max)
            return vmlet_err_set(err, "header block inflates past %zu bytes", max);
        size_t room = 4096;
        z->inf.next_out = spdy_buf_reserve(raw, room);
        z->inf.avail_out = (uInt)room;
        int rc = inflate(&z->inf, Z_SYNC_FLUSH);
        raw->len += room - z->inf.avail_out;
        if (rc == Z_NEED_DICT) {
            // Only the SPDY dictionary is acceptable; zlib checks its id.
            if (inflateSetDictionary(&z->inf, spdy_dictionary, SPDY_DICTIONARY_LEN) != Z_OK)
                return vmlet_err_set(err, "header block wants a dictionary other than SPDY/3's");
            continue;
        }
        if (rc == Z_STREAM_END && z->inf.avail_in > 0)
            return vmlet_err_set(err, "header compression stream ended with bytes left");
        if (rc == Z_STREAM_END || (rc == Z_BUF_ERROR && z->inf.avail_in == 0))
            break; // no more progress: all input used
        if (rc != Z_OK)
            return vmlet_err_set(err, "header block does not inflate: zlib %d%s%s", rc,
                                 z->inf.msg ? ": " : "", z->inf.msg ? z->inf.msg : "");
        if (z->inf.avail_in == 0 && z->inf.avail_out != 0)
            break; // all input used and all output flushed
    }
    if (raw->len > max)
        return vmlet_err_set(err, "header block inflates past %zu bytes", max);
    return 0;
}
