// HTTP reason phrases (RFC 9110), one table for every server and client
// message that names a status.
#ifndef VMLET_HTTP_STATUS_H
#define VMLET_HTTP_STATUS_H

// The phrase for an HTTP status ("Not Found" for 404), or `fallback`
// (which may be NULL) for one the table does not know.
const char *vmlet_http_reason(long status, const char *fallback);

#endif
