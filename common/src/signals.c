// Signals as loop events through signalfd (see signals.h).
#include "vmlet/signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>

struct _vmlet_signals_t {
    int fd;
    int received;
    vmlet_log_t *log;
    zloop_t *loop;
    zmq_pollitem_t item;
};

vmlet_signals_t *vmlet_signals_new(vmlet_log_t *log, vmlet_err_t *err)
{
    // CZMQ installs its own SIGINT/SIGTERM handler at first use unless told
    // not to; ours must be the only one.
    zsys_handler_set(NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        vmlet_err_errno(err, errno, "blocking SIGTERM and SIGINT");
        return NULL;
    }
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        vmlet_err_errno(err, errno, "signalfd");
        return NULL;
    }
    vmlet_signals_t *self = calloc(1, sizeof *self);
    if (!self) {
        close(fd);
        vmlet_err_set(err, "signals: out of memory");
        return NULL;
    }
    self->fd = fd;
    self->log = log;
    return self;
}

void vmlet_signals_destroy(vmlet_signals_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vmlet_signals_t *self = *self_p;
    if (self->loop)
        zloop_poller_end(self->loop, &self->item);
    close(self->fd);
    free(self);
    *self_p = NULL;
}

static int s_on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    vmlet_signals_t *self = arg;
    struct signalfd_siginfo info;
    while (read(self->fd, &info, sizeof info) == (ssize_t)sizeof info) {
        self->received = (int)info.ssi_signo;
        vmlet_log_info(self->log, VMLET_KV({"signal", strsignal((int)info.ssi_signo)}),
                       "shutting down");
    }
    return self->received ? -1 : 0;
}

int vmlet_signals_attach(vmlet_signals_t *self, zloop_t *loop, vmlet_err_t *err)
{
    self->item = (zmq_pollitem_t){NULL, self->fd, ZMQ_POLLIN, 0};
    if (zloop_poller(loop, &self->item, s_on_signal, self) < 0)
        return vmlet_err_set(err, "signals: cannot watch the signalfd");
    self->loop = loop;
    return 0;
}

int vmlet_signals_received(const vmlet_signals_t *self)
{
    return self->received;
}
