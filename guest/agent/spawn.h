// What a container's process and an exec session's have in common between
// fork and execve: signals back to defaults, the status channel to the
// agent (a pty master handed over, or why the start failed, in runc's
// words), the user, and the program looked up in the container's PATH.
#ifndef VMLET_AGENT_SPAWN_H
#define VMLET_AGENT_SPAWN_H

#include "vmlet/proto/guest.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define START_FAILED_SETUP 128  // the container's mounts or stdio could not be made
#define START_FAILED_NOEXEC 126 // found but not executable
#define START_FAILED_NOTFOUND 127

// --- in the child -----------------------------------------------------------------------
// Unblocks every signal and restores default dispositions (the agent
// blocks most for its signalfd and ignores SIGPIPE; both survive execve).
void child_reset_signals(void);
// Reports a failure to the agent and exits with code. Never returns.
void child_fail(int sock, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
// Opens a pty in the current mount namespace's /dev/ptmx (the container's
// devpts), makes its slave the controlling terminal and stdin/out/err,
// and hands the master to the agent over sock.
int child_pty(int sock, uint32_t rows, uint32_t cols, char *msg, size_t cap);
// Sets groups, gid and uid from StartContainer (user looked up in the
// current root's /etc/passwd and /etc/group), and its capabilities and
// no_new_privs (security.h). Creates work_dir first (as root, as runc
// does), then enters it as the user.
int child_identity(const Vmlet__StartContainer *run, const char *work_dir, int *code, char *msg,
                   size_t cap);
// Looks argv[0] up in PATH from env and execs it; on failure returns with
// code (126/127) and runc's message.
void child_exec(char *const argv[], char *const env[], int *code, char *msg, size_t cap);

// --- in the agent -----------------------------------------------------------------------
// Waits (up to timeout_ms) for the child's verdict: 0 once it exec'd
// (*pty_master set if it sent one, else -1), or -1 with its exit code and
// message.
int status_wait(int sock, int timeout_ms, int *pty_master, int *code, char *msg, size_t cap);

#endif
