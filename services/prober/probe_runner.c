// The probe runner: slots, libcurl's multi interface driven from the zloop,
// and the callbacks (see probe_runner.h).
//
// libcurl's sockets, its timer (a timerfd) and a doorbell for outcomes
// known without a transfer (an eventfd) all sit in one epoll set, and that
// set is the runner's only poller on the zloop. Why not a zloop poller per
// socket and a zloop timer for libcurl: zloop rebuilds its whole poll set
// whenever a poller comes or goes (twice per probe here) and polls every
// descriptor on each turn; and a zloop timer ended from inside its own
// handler is freed under the loop's feet once zloop_start has returned
// once (czmq 4.2's `terminated` flag), which a service restarting its loop
// does. One poller and no timers also make destroy safe from any handler.
#include "probe_internal.h"

#include "vmlet/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EPOLL_BATCH 256

struct _probe_runner_t {
    zloop_t *loop;
    vmlet_log_t *log;
    CURLM *multi;
    int epfd, timerfd, eventfd;
    zmq_pollitem_t item; // the epoll set, as the loop polls it
    bool polled;
    long timer_ms;        // what the timerfd is set to (-1: disarmed), to skip needless resets
    probe_slot_t *active; // probes in flight (doubly linked)
    probe_slot_t *free;   // slots to reuse (singly linked)
    probe_slot_t *finished_head; // outcomes waiting for their callback
    probe_slot_t *finished_tail;
    size_t n_finished;
    size_t in_flight, max_in_flight;
    bool in_handler;  // inside the poller: outcomes are delivered before it returns
    bool dispatching; // inside a done callback
    bool doorbell;    // the eventfd has been written and not read
    char *user_agent;
};

// --- libcurl's sockets and timer in the epoll set ---

static int s_on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    probe_runner_t *self = userp;
    if (what & CURL_POLL_IN) {
        // While connecting curl only waits to write; a wait to read means the
        // TCP connection is up (TLS may still be under way, which libcurl's
        // own connect time does not tell apart from a pending connect).
        probe_slot_t *slot = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &slot);
        if (slot)
            slot->saw_read = true;
    }
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, s, NULL); // may already be closed: fine
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(self->epfd, op, s, &ev) < 0) {
        // A descriptor number curl closed and opened again, or one the kernel
        // dropped from the set when it was closed: whichever op fits.
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(self->epfd, op, s, &ev) < 0) {
            // Not -1: that would abort every transfer of the multi. This one
            // times out instead.
            vmlet_log_error(self->log, NULL, "probe runner: epoll_ctl fd %d: %s", s,
                            strerror(errno));
            return 0;
        }
    }
    if (!socketp)
        curl_multi_assign(self->multi, s, self); // marks it as in the set
    return 0;
}

static int s_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    probe_runner_t *self = userp;
    if (timeout_ms == self->timer_ms && timeout_ms < 0)
        return 0;
    self->timer_ms = timeout_ms;
    struct itimerspec its = {0};
    if (timeout_ms == 0)
        its.it_value.tv_nsec = 1; // zero would disarm it: "as soon as possible"
    else if (timeout_ms > 0) {
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = timeout_ms % 1000 * 1000000L;
    }
    if (timerfd_settime(self->timerfd, 0, &its, NULL) < 0) // -1 would abort every transfer
        vmlet_log_error(self->log, NULL, "probe runner: timerfd_settime: %s", strerror(errno));
    return 0;
}

// --- slots ---

static probe_slot_t *s_slot_take(probe_runner_t *self)
{
    probe_slot_t *slot = self->free;
    if (slot)
        self->free = slot->next;
    else {
        slot = vmlet_xcalloc(1, sizeof *slot);
        slot->runner = self;
    }
    slot->prev = NULL;
    slot->next = self->active;
    if (self->active)
        self->active->prev = slot;
    self->active = slot;
    slot->active = true;
    slot->finished = false;
    slot->in_multi = false;
    slot->next_finished = NULL;
    self->in_flight++;
    return slot;
}

static void s_slot_unlink(probe_runner_t *self, probe_slot_t *slot)
{
    if (slot->prev)
        slot->prev->next = slot->next;
    else
        self->active = slot->next;
    if (slot->next)
        slot->next->prev = slot->prev;
    slot->active = false;
    self->in_flight--;
}

// Back to the free list (its handle and buffers are kept).
static void s_slot_release(probe_runner_t *self, probe_slot_t *slot)
{
    curl_slist_free_all(slot->headers);
    slot->headers = NULL;
    slot->done = NULL;
    slot->arg = NULL;
    slot->next = self->free;
    self->free = slot;
}

static void s_slot_free(probe_slot_t *slot)
{
    if (slot->easy)
        curl_easy_cleanup(slot->easy);
    curl_slist_free_all(slot->headers);
    probe_buf_t *bufs[] = {&slot->url,          &slot->hostport, &slot->grpc_req, &slot->location,
                           &slot->grpc_message, &slot->body,     &slot->output,   &slot->strings,
                           &slot->scratch,      &slot->scratch2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        probe_buf_free(bufs[i]);
    free(slot);
}

// Takes a slot out of the multi or the finished queue, without callback.
static void s_slot_cancel(probe_runner_t *self, probe_slot_t *slot)
{
    if (slot->in_multi) {
        curl_multi_remove_handle(self->multi, slot->easy);
        slot->in_multi = false;
    }
    if (slot->finished) {
        probe_slot_t **pp = &self->finished_head, *last = NULL;
        while (*pp && *pp != slot) {
            last = *pp;
            pp = &(*pp)->next_finished;
        }
        if (*pp) {
            *pp = slot->next_finished;
            if (self->finished_tail == slot)
                self->finished_tail = last;
            self->n_finished--;
        }
    }
    s_slot_unlink(self, slot);
    s_slot_release(self, slot);
}

// --- services for the kinds ---

int probe_slot_submit(probe_slot_t *slot)
{
    CURLMcode rc = curl_multi_add_handle(slot->runner->multi, slot->easy);
    if (rc != CURLM_OK) {
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "prober: libcurl: %s",
                          curl_multi_strerror(rc));
        return -1;
    }
    slot->in_multi = true;
    return 0;
}

void probe_slot_finish(probe_slot_t *slot, probe_result_t result, bool warning, const char *fmt,
                       ...)
{
    probe_runner_t *self = slot->runner;
    slot->result = result;
    slot->warning = warning;
    probe_buf_reset(&slot->output);
    va_list ap;
    va_start(ap, fmt);
    probe_buf_vprintf(&slot->output, fmt, ap);
    va_end(ap);
    slot->finished = true;
    slot->next_finished = NULL;
    if (self->finished_tail)
        self->finished_tail->next_finished = slot;
    else
        self->finished_head = slot;
    self->finished_tail = slot;
    self->n_finished++;
    if (!self->in_handler && !self->doorbell) {
        uint64_t one = 1;
        if (write(self->eventfd, &one, sizeof one) == sizeof one)
            self->doorbell = true;
    }
}

const char *probe_slot_user_agent(const probe_slot_t *slot)
{
    return slot->runner->user_agent;
}

// --- completion ---

// Moves finished transfers out of the multi, then lets their kind decide
// (another request for a redirect, or an outcome).
static void s_reap(probe_runner_t *self)
{
    probe_slot_t *done_head = NULL, **done_tail = &done_head;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        probe_slot_t *slot = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &slot);
        CURLcode code = msg->data.result;
        curl_multi_remove_handle(self->multi, msg->easy_handle); // msg is gone after this
        slot->in_multi = false;
        slot->code = code;
        slot->next_finished = NULL;
        *done_tail = slot;
        done_tail = &slot->next_finished;
    }
    while (done_head) {
        probe_slot_t *slot = done_head;
        done_head = slot->next_finished;
        slot->next_finished = NULL;
        CURLcode code = slot->code;
        switch (slot->kind) {
        case PROBE_TARGET_HTTP:
            probe_http_done(slot, code);
            break;
        case PROBE_TARGET_TCP:
            probe_tcp_done(slot, code);
            break;
        case PROBE_TARGET_GRPC:
            probe_grpc_done(slot, code);
            break;
        }
    }
}

// Calls back the outcomes queued so far (those queued by the callbacks
// themselves wait for the next turn, so a callback that always starts a
// probe that fails at once cannot hold the loop).
static void s_deliver(probe_runner_t *self)
{
    for (size_t n = self->n_finished; n > 0 && self->finished_head; n--) {
        probe_slot_t *slot = self->finished_head;
        self->finished_head = slot->next_finished;
        if (!self->finished_head)
            self->finished_tail = NULL;
        self->n_finished--;
        slot->finished = false;
        s_slot_unlink(self, slot);
        probe_outcome_t outcome = {
            .result = slot->result,
            .warning = slot->warning,
            .output = probe_buf_str(&slot->output),
            .body = slot->kind == PROBE_TARGET_HTTP ? probe_buf_str(&slot->body) : "",
            .latency_us = probe_now_us() - slot->start_us,
        };
        self->dispatching = true;
        slot->done(slot->arg, &outcome);
        self->dispatching = false;
        s_slot_release(self, slot);
    }
    if (self->finished_head && !self->doorbell) {
        uint64_t one = 1;
        if (write(self->eventfd, &one, sizeof one) == sizeof one)
            self->doorbell = true;
    }
}

static int s_on_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    probe_runner_t *self = arg;
    struct epoll_event evs[EPOLL_BATCH];
    int n = epoll_wait(self->epfd, evs, EPOLL_BATCH, 0);
    self->in_handler = true;
    int running;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint64_t count;
        if (fd == self->timerfd) {
            if (read(self->timerfd, &count, sizeof count) == sizeof count)
                self->timer_ms = -1; // it fired (one-shot), unless curl has set it again since
            else if (errno != EAGAIN)
                vmlet_log_warn(self->log, NULL, "probe runner: timerfd: %s", strerror(errno));
            curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        } else if (fd == self->eventfd) {
            if (read(self->eventfd, &count, sizeof count) < 0 && errno != EAGAIN)
                vmlet_log_warn(self->log, NULL, "probe runner: eventfd: %s", strerror(errno));
            self->doorbell = false;
        } else {
            int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                       (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                       (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(self->multi, fd, mask, &running);
        }
    }
    s_reap(self);
    s_deliver(self);
    self->in_handler = false;
    return 0;
}

// --- the public face ---

probe_runner_t *probe_runner_new(zloop_t *loop, vmlet_log_t *log, vmlet_err_t *err)
{
    probe_runner_t *self = vmlet_xcalloc(1, sizeof *self);
    self->loop = loop;
    self->log = log;
    self->epfd = self->timerfd = self->eventfd = -1;
    self->timer_ms = -1;
    self->user_agent = vmlet_xstrdup("kube-probe/1.20");
    struct rlimit rl;
    size_t max = 16384;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < max)
        max = rl.rlim_cur / 2;
    self->max_in_flight = max;
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0) {
        vmlet_err_errno(err, errno, "probe runner: epoll_create1");
        goto fail;
    }
    self->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->timerfd < 0) {
        vmlet_err_errno(err, errno, "probe runner: timerfd_create");
        goto fail;
    }
    self->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->eventfd < 0) {
        vmlet_err_errno(err, errno, "probe runner: eventfd");
        goto fail;
    }
    int fds[] = {self->timerfd, self->eventfd};
    for (size_t i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            vmlet_err_errno(err, errno, "probe runner: epoll_ctl");
            goto fail;
        }
    }
    self->multi = curl_multi_init();
    if (!self->multi) {
        vmlet_err_set(err, "probe runner: curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, s_on_curl_socket);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, s_on_curl_timer);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    self->item = (zmq_pollitem_t){.fd = self->epfd, .events = ZMQ_POLLIN};
    if (zloop_poller(loop, &self->item, s_on_ready, self) < 0) {
        vmlet_err_set(err, "probe runner: zloop_poller failed");
        goto fail;
    }
    zloop_poller_set_tolerant(loop, &self->item);
    self->polled = true;
    return self;
fail:
    probe_runner_destroy(&self);
    return NULL;
}

void probe_runner_destroy(probe_runner_t **self_p)
{
    probe_runner_t *self = *self_p;
    if (!self)
        return;
    assert(!self->dispatching); // not from inside a done callback
    while (self->active)
        s_slot_cancel(self, self->active);
    while (self->free) {
        probe_slot_t *slot = self->free;
        self->free = slot->next;
        s_slot_free(slot);
    }
    if (self->multi)
        curl_multi_cleanup(self->multi);
    if (self->polled)
        zloop_poller_end(self->loop, &self->item);
    int fds[] = {self->epfd, self->timerfd, self->eventfd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(self->user_agent);
    free(self);
    *self_p = NULL;
}

int probe_runner_start(probe_runner_t *self, const probe_target_t *target, probe_done_fn done,
                       void *arg, vmlet_err_t *err)
{
    if (!self || !target || !target->host || !done)
        return vmlet_err_set(err, "probe: no %s given",
                             !self     ? "runner"
                             : !target ? "target"
                             : !done   ? "callback"
                                       : "host");
    if (target->kind != PROBE_TARGET_HTTP && target->kind != PROBE_TARGET_TCP &&
        target->kind != PROBE_TARGET_GRPC)
        return vmlet_err_set(err, "probe: unknown kind %d", (int)target->kind);
    bool too_many = self->in_flight >= self->max_in_flight;
    probe_slot_t *slot = s_slot_take(self);
    slot->kind = target->kind;
    slot->done = done;
    slot->arg = arg;
    slot->start_us = probe_now_us();
    slot->deadline_us =
        slot->start_us + (int64_t)(target->timeout_ms > 0 ? target->timeout_ms : 0) * 1000;
    probe_slot_copy_target(slot, target);
    probe_buf_reset(&slot->hostport);
    probe_join_host_port(&slot->hostport, slot->host, slot->port);
    if (too_many) {
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false,
                          "prober: too many probes in flight (%zu)", self->max_in_flight);
        return 0;
    }
    // What the kubelet rejects before probing (a probe error: no verdict).
    if (target->port < 1 || target->port > 65535) {
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "invalid port number: %d",
                          target->port);
        return 0;
    }
    if (target->timeout_ms <= 0) {
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "invalid timeout: %d ms",
                          target->timeout_ms);
        return 0;
    }
    if (!*slot->host) {
        probe_slot_finish(slot, PROBE_RESULT_UNKNOWN, false, "no host to probe");
        return 0;
    }
    switch (slot->kind) {
    case PROBE_TARGET_HTTP:
        probe_http_begin(slot);
        break;
    case PROBE_TARGET_TCP:
        probe_tcp_begin(slot);
        break;
    case PROBE_TARGET_GRPC:
        probe_grpc_begin(slot);
        break;
    }
    return 0;
}

size_t probe_runner_in_flight(const probe_runner_t *self)
{
    return self ? self->in_flight : 0;
}

size_t probe_runner_cancel(probe_runner_t *self, const void *arg)
{
    size_t n = 0;
    probe_slot_t *slot = self->active;
    while (slot) {
        probe_slot_t *next = slot->next;
        if (slot->arg == arg) {
            s_slot_cancel(self, slot);
            n++;
        }
        slot = next;
    }
    return n;
}

void probe_runner_set_max_in_flight(probe_runner_t *self, size_t max)
{
    self->max_in_flight = max;
}

void probe_runner_set_user_agent(probe_runner_t *self, const char *user_agent)
{
    free(self->user_agent);
    self->user_agent = vmlet_xstrdup(user_agent ? user_agent : "");
}

const char *probe_result_name(probe_result_t result)
{
    switch (result) {
    case PROBE_RESULT_SUCCESS:
        return "success";
    case PROBE_RESULT_FAILURE:
        return "failure";
    default:
        return "unknown";
    }
}

const char *probe_target_kind_name(probe_target_kind_t kind)
{
    switch (kind) {
    case PROBE_TARGET_HTTP:
        return "http";
    case PROBE_TARGET_TCP:
        return "tcp";
    case PROBE_TARGET_GRPC:
        return "grpc";
    default:
        return "unknown";
    }
}
