// One session's connection (session_conn.c): frames in and out, the
// bounded output buffer, and the marks that turn bytes written to the
// client into window updates for the guest agent. Used by session_server.c.
#ifndef VMLET_LAUNCHER_SESSION_CONN_H
#define VMLET_LAUNCHER_SESSION_CONN_H

#include "session.h"

// Takes fd (an accepted, non-blocking connection) and polls it. NULL on
// failure (fd closed).
session_t *session_conn_new(session_server_t *srv, int fd, const char *peer);
// Releases the kind, closes the connection and frees; the server forgets
// it. Safe on NULL.
void session_conn_destroy(session_t **s_p);
// Packs f into the output buffer (guest_bytes: agent stream bytes it
// carries, acknowledged once written) and writes what the socket takes.
void session_conn_queue(session_t *s, const Vmlet__SessionFrame *f, uint32_t guest_bytes);

// Input left waiting for the agent's window went out: reading goes on.
void session_conn_resume(session_t *s);
// True when the sweep should free it (client gone, end written or overdue).
bool session_conn_done(const session_t *s, int64_t now_ms);

// session_server.c, for the connection.
void session_server_open(session_server_t *srv, session_t *s, const Vmlet__SessionOpen *o);
void session_server_forget(session_server_t *srv, session_t *s);
launcher_t *session_server_launcher(session_server_t *srv);

#endif
