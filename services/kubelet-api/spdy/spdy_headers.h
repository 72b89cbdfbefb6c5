// SPDY/3 header blocks: the name/value block encoding and its zlib
// compression with the SPDY dictionary, one deflate and one inflate context
// per session because the compression state spans the whole connection.
#ifndef VMLET_SPDY_HEADERS_H
#define VMLET_SPDY_HEADERS_H

#include "spdy_frame.h"
#include "vmlet_spdy.h"

#include "vmlet/err.h"

#define SPDY_DICTIONARY_LEN 1423
extern const uint8_t spdy_dictionary[SPDY_DICTIONARY_LEN];

// Headers decoded from one block; every pointer points into `store`.
typedef struct {
    vmlet_spdy_header_t *v;
    size_t n;
    char *store;
} spdy_hdrs_t;

void spdy_hdrs_free(spdy_hdrs_t *h);

// The name/value block without compression: a 32-bit count, then per pair
// a 32-bit name length, the name, a 32-bit value length, the value.
// Returns -1 (err set) on a name that is empty or not lower case.
int spdy_nv_build(const vmlet_spdy_header_t *h, size_t n, spdy_buf_t *out, vmlet_err_t *err);
// Parses an inflated block into out (the caller frees it with
// spdy_hdrs_free). Returns -1 (err set) on anything the spec calls a
// PROTOCOL_ERROR for the stream: bad lengths, empty or upper-case names,
// duplicate names, empty values inside a NUL-joined list, more than
// max_pairs pairs.
int spdy_nv_parse(const uint8_t *raw, size_t len, size_t max_pairs, spdy_hdrs_t *out,
                  vmlet_err_t *err);

typedef struct spdy_zctx spdy_zctx_t;

// Both zlib contexts of one end of a session. NULL (err set) when zlib
// cannot allocate.
spdy_zctx_t *spdy_z_new(vmlet_err_t *err);
void spdy_z_destroy(spdy_zctx_t **self_p);

// Deflates an already built name/value block (Z_SYNC_FLUSH, so the peer
// can inflate it whole), appending the compressed bytes to out.
int spdy_z_deflate(spdy_zctx_t *z, const uint8_t *raw, size_t len, spdy_buf_t *out,
                   vmlet_err_t *err);
// Builds and deflates a block (Z_SYNC_FLUSH, so the peer can inflate it
// whole), appending the compressed bytes to out.
int spdy_z_encode(spdy_zctx_t *z, const vmlet_spdy_header_t *h, size_t n, spdy_buf_t *out,
                  vmlet_err_t *err);
// Inflates one whole compressed block into raw (replacing its contents).
// Returns -1 (err set) when it does not inflate or inflates to more than
// max bytes; either is a session error, as the shared zlib state is lost.
int spdy_z_inflate(spdy_zctx_t *z, const uint8_t *in, size_t len, size_t max, spdy_buf_t *raw,
                   vmlet_err_t *err);

#endif
