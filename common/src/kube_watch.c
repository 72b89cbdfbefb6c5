// List-then-watch of one Kubernetes collection on a thread of its own,
// handing events to the owner's loop over an inproc PAIR (see kube_watch.h).
//
// The thread owns its vmlet_kube_t; the owner only flips the stop/relist
// flags and wakes the thread's request with vmlet_kube_wakeup. Metrics are
// not thread-safe, so the thread reports failures and reconnects as
// messages too, and the loop side counts them.
#include "vmlet/kube_watch.h"
#include "vmlet/kube_api.h"
#include "vmlet/backoff.h"
#include "vmlet/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#define S_PAGE_SIZE 500
#define S_WATCH_TIMEOUT_S 300  // asked of the server, +-10% so watches do not end in step
#define S_WATCH_GRACE_MS 30000 // beyond timeoutSeconds before we give up on a silent stream
#define S_SHORT_WATCH_MS 1000  // a stream that ends sooner, empty, counts as a failure
#define S_SEND_TIMEOUT_MS 50   // how often a full pipe re-checks the stop flag
#define S_PIPE_HWM 1000
#define S_BATCH 256 // messages handled per wake-up of the loop

// Thread-to-loop messages: one byte (a vmlet_watch_event_t or one of these),
// then the object's JSON text for LISTED, ADDED, MODIFIED, DELETED.
enum { S_MSG_FAILED = 100, S_MSG_RECONNECT, S_MSG_RESUMED };

// How a LIST or WATCH ended.
typedef enum {
    S_OK,        // listed; or the server ended the stream (timeoutSeconds)
    S_GONE,      // 410: the resume point is too old, relist
    S_BROKEN,    // transport failure, error answer or ERROR event: retry after back-off
    S_BAD_INPUT, // not what the API promises: relist after back-off
    S_CANCELLED, // stop or relist asked for
} s_outcome_t;

static const char *const s_outcome_names[] = {"ok", "gone (410)", "failed", "got bad input",
                                              "cancelled"};

struct _vmlet_kube_watch_t {
    // Fixed at construction; both threads read them.
    char *collection;                      // "/api/v1/pods"
    char *field_selector, *label_selector; // NULL when not given
    vmlet_kube_t *kube;
    vmlet_log_t *log;
    vmlet_kv_t fields[2]; // for the log: resource=<collection>
    // The owner's side.
    vmlet_watch_fn *fn;
    void *arg;
    zloop_t *loop;
    zsock_t *pipe;
    bool synced;
    vmlet_metric_t *events[VMLET_WATCH_DELETED + 1];
    vmlet_metric_t *lists, *reconnects, *synced_gauge;
    pthread_t thread;
    bool started;
    // Shared.
    atomic_bool stop, relist;
    // The thread's side.
    zsock_t *thread_pipe;
    char *rv; // where the next WATCH resumes
    bool watching;
    bool recovering; // the next request follows an end or a failure
    vmlet_backoff_t backoff;
    s_outcome_t last_failure; // S_OK after a success
    unsigned failures;
    char failure[512]; // the last failure's detail
    // The WATCH in progress.
    s_outcome_t why;
    long lines;
    char detail[512];
};

// --- construction --------------------------------------------------------------

// Appends "&name=<percent-escaped value>" to *url unless value is NULL or "".
static int s_add_param(char **url, const char *name, const char *value)
{
    if (!value || !*value)
        return 0;
    size_t cap = 3 * strlen(value) + 1;
    char *escaped = malloc(cap);
    if (!escaped || !vmlet_kube_escape(value, escaped, cap)) {
        free(escaped);
        return -1;
    }
    size_t have = strlen(*url), n = have + strlen(name) + 2 + strlen(escaped) + 1;
    char *grown = realloc(*url, n);
    if (grown)
        snprintf(grown + have, n - have, "&%s=%s", name, escaped);
    free(escaped);
    if (!grown)
        return -1;
    *url = grown;
    return 0;
}

static char *s_path(const vmlet_kube_watch_t *self, const char *head, const char *name,
                    const char *value)
{
    char *path = NULL;
    if (asprintf(&path, "%s?%s", self->collection, head) < 0)
        return NULL;
    if (s_add_param(&path, name, value) < 0 ||
        s_add_param(&path, "fieldSelector", self->field_selector) < 0 ||
        s_add_param(&path, "labelSelector", self->label_selector) < 0) {
        free(path);
        return NULL;
    }
    return path;
}

// The last segment of the collection path is the metrics' resource label.
static void s_register_metrics(vmlet_kube_watch_t *self, vmlet_metrics_t *metrics)
{
    const char *resource = strrchr(self->collection, '/') + 1;
    static const char *const types[] = {"LISTED", "ADDED", "MODIFIED", "DELETED"};
    char labels[256];
    for (int i = VMLET_WATCH_LISTED; i <= VMLET_WATCH_DELETED; i++) {
        snprintf(labels, sizeof labels, "resource=\"%s\",type=\"%s\"", resource,
                 types[i == VMLET_WATCH_LISTED ? 0 : i - VMLET_WATCH_ADDED + 1]);
        self->events[i] = vmlet_metrics_counter(metrics, "vmlet_kube_watch_events_total",
                                                "Objects delivered by list and watch.", labels);
    }
    snprintf(labels, sizeof labels, "resource=\"%s\"", resource);
    self->lists = vmlet_metrics_counter(metrics, "vmlet_kube_watch_lists_total",
                                        "Complete LISTs delivered (first and relists).", labels);
    self->reconnects = vmlet_metrics_counter(
        metrics, "vmlet_kube_watch_reconnects_total",
        "Requests made to resume after a watch ended or a request failed.", labels);
    self->synced_gauge =
        vmlet_metrics_gauge(metrics, "vmlet_kube_watch_synced",
                            "1 after a complete LIST until the next failure.", labels);
}

static bool s_cancel_check(void *arg);

vmlet_kube_watch_t *vmlet_kube_watch_new(const vmlet_kube_config_t *config, const char *collection,
                                         const char *field_selector, const char *label_selector,
                                         vmlet_watch_fn *fn, void *arg, vmlet_log_t *log,
                                         vmlet_metrics_t *metrics, vmlet_err_t *err)
{
    if (!collection || collection[0] != '/' || strchr(collection, '?') ||
        collection[strlen(collection) - 1] == '/') {
        vmlet_err_set(err, "watch: collection '%s' is not a path like /api/v1/pods",
                      collection ? collection : "(null)");
        return NULL;
    }
    vmlet_kube_watch_t *self = calloc(1, sizeof *self);
    if (!self || !(self->collection = strdup(collection)) ||
        (field_selector && !(self->field_selector = strdup(field_selector))) ||
        (label_selector && !(self->label_selector = strdup(label_selector)))) {
        vmlet_err_set(err, "watch %s: out of memory", collection);
        vmlet_kube_watch_destroy(&self);
        return NULL;
    }
    if (!(self->kube = vmlet_kube_new(config, err))) {
        vmlet_err_wrap(err, "watch %s", collection);
        vmlet_kube_watch_destroy(&self);
        return NULL;
    }
    vmlet_kube_set_cancel(self->kube, s_cancel_check, self);
    self->fields[0] = (vmlet_kv_t){"resource", self->collection};
    self->fn = fn;
    self->arg = arg;
    self->log = log;
    atomic_init(&self->stop, false);
    atomic_init(&self->relist, false);
    vmlet_backoff_policy_t policy = {
        .initial_ms = 200, .max_ms = 10000, .multiplier = 2, .jitter = 0.2};
    vmlet_backoff_init(&self->backoff, &policy);
    s_register_metrics(self, metrics);
    return self;
}

// --- the thread: talking to the loop ----------------------------------------------

// Stop always cancels; a relist request cancels only a WATCH (a LIST in
// progress finishes, and the flag makes another one follow).
static bool s_cancel_check(void *arg)
{
    vmlet_kube_watch_t *self = arg;
    return atomic_load(&self->stop) || (self->watching && atomic_load(&self->relist));
}

// One message to the loop: kind, and object (may be NULL) as JSON text.
// Waits while the pipe is full (the owner is slow), re-checking the stop
// flag. Returns -1 once stopping (or out of memory).
static int s_send(vmlet_kube_watch_t *self, int kind, const cJSON *object)
{
    cleanup_free char *text = object ? cJSON_PrintUnformatted(object) : NULL;
    size_t len = text ? strlen(text) : 0;
    zmq_msg_t msg;
    if ((object && !text) || zmq_msg_init_size(&msg, 1 + len) < 0)
        return -1;
    unsigned char *data = zmq_msg_data(&msg);
    data[0] = (unsigned char)kind;
    memcpy(data + 1, text ? text : "", len);
    void *socket = zsock_resolve(self->thread_pipe);
    while (!atomic_load(&self->stop)) {
        if (zmq_msg_send(&msg, socket, 0) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            break;
    }
    zmq_msg_close(&msg);
    return -1;
}

static int s_set_rv(vmlet_kube_watch_t *self, const char *rv)
{
    char *copy = strdup(rv);
    if (!copy)
        return -1;
    free(self->rv);
    self->rv = copy;
    return 0;
}

static const char *s_str(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (b)
        item = cJSON_GetObjectItemCaseSensitive(item, b);
    return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

// Records why a request ended (for the log) and returns `why`.
__attribute__((format(printf, 3, 4))) static s_outcome_t
s_fail_with(vmlet_kube_watch_t *self, s_outcome_t why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->detail, sizeof self->detail, fmt, ap);
    va_end(ap);
    self->why = why;
    return why;
}

// --- the thread: LIST -------------------------------------------------------------------

// Checks that every item is an object and gives those without kind and
// apiVersion the list's ("ConfigMapList" -> "ConfigMap"), as client-go's
// unstructured lists do, so LISTED objects look like watched ones.
static int s_fill_items(cJSON *page)
{
    cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items"), *item;
    const char *list_kind = s_str(page, "kind", NULL);
    const char *api_version = s_str(page, "apiVersion", NULL);
    size_t len = list_kind ? strlen(list_kind) : 0;
    char kind[256] = "";
    if (len > 4 && len < sizeof kind + 4 && strcmp(list_kind + len - 4, "List") == 0)
        snprintf(kind, sizeof kind, "%.*s", (int)(len - 4), list_kind);
    if (!cJSON_IsArray(items))
        return -1;
    cJSON_ArrayForEach(item, items)
    {
        if (!cJSON_IsObject(item))
            return -1;
        if (kind[0] && !cJSON_HasObjectItem(item, "kind"))
            cJSON_AddStringToObject(item, "kind", kind);
        if (api_version && !cJSON_HasObjectItem(item, "apiVersion"))
            cJSON_AddStringToObject(item, "apiVersion", api_version);
    }
    return 0;
}

// Reads one page into *page; validates what the rest relies on.
static s_outcome_t s_list_page(vmlet_kube_watch_t *self, const char *cont, cJSON **page)
{
    char head[32];
    snprintf(head, sizeof head, "limit=%d", S_PAGE_SIZE);
    cleanup_free char *path = s_path(self, head, "continue", cont);
    if (!path)
        return s_fail_with(self, S_BROKEN, "out of memory");
    long status = 0;
    vmlet_err_t err = {0};
    if (vmlet_kube_request(self->kube, "GET", path, NULL, NULL, &status, page, &err) < 0)
        return s_fail_with(self, err.code == ECANCELED ? S_CANCELLED : S_BROKEN, "LIST: %s",
                           err.msg);
    if (status < 200 || status > 299) {
        const char *message = s_str(*page, "message", NULL);
        // 410 here means the continue token expired: start the list afresh.
        return s_fail_with(self, status == 410 ? S_GONE : S_BROKEN, "LIST %s: %ld %s", path, status,
                           message ? message : "(no Status message)");
    }
    if (s_fill_items(*page) < 0 || !s_str(*page, "metadata", "resourceVersion"))
        return s_fail_with(self, S_BAD_INPUT,
                           "LIST %s: answer is not a list with items and "
                           "metadata.resourceVersion",
                           path);
    return S_OK;
}

// Delivers a complete list: LIST_BEGIN, LISTED per item, LIST_END.
static s_outcome_t s_deliver_list(vmlet_kube_watch_t *self, const cJSON *pages)
{
    const cJSON *page, *item;
    if (s_send(self, VMLET_WATCH_LIST_BEGIN, NULL) < 0)
        return S_CANCELLED;
    cJSON_ArrayForEach(page, pages)
    {
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(page, "items"))
        {
            if (s_send(self, VMLET_WATCH_LISTED, item) < 0)
                return S_CANCELLED;
        }
    }
    return s_send(self, VMLET_WATCH_LIST_END, NULL) < 0 ? S_CANCELLED : S_OK;
}

// Pages through the collection (a consistent read: no resourceVersion)
// and delivers it only once complete, so the owner never sees a torn list.
static s_outcome_t s_list(vmlet_kube_watch_t *self)
{
    cJSON *pages = cJSON_CreateArray();
    if (!pages)
        return s_fail_with(self, S_BROKEN, "out of memory");
    const char *cont = NULL, *rv = NULL;
    s_outcome_t outcome;
    do {
        cJSON *page = NULL;
        outcome = s_list_page(self, cont, &page);
        if (outcome != S_OK) {
            cJSON_Delete(page);
            break;
        }
        cJSON_AddItemToArray(pages, page);
        rv = s_str(page, "metadata", "resourceVersion");
        cont = s_str(page, "metadata", "continue");
    } while (cont);
    if (outcome == S_OK && s_set_rv(self, rv) < 0)
        outcome = S_BROKEN;
    if (outcome == S_OK)
        outcome = s_deliver_list(self, pages);
    cJSON_Delete(pages);
    return outcome;
}

// --- the thread: WATCH ------------------------------------------------------------------

// An ERROR event carries a metav1.Status; 410 means the resume point expired.
static s_outcome_t s_on_error_event(vmlet_kube_watch_t *self, const cJSON *status)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(status, "code");
    const char *message = s_str(status, "message", NULL);
    int number = cJSON_IsNumber(code) ? code->valueint : 0;
    return s_fail_with(self, number == 410 ? S_GONE : S_BROKEN, "ERROR event: code %d: %s", number,
                       message ? message : "(no message)");
}

// ADDED, MODIFIED, DELETED go to the owner; every event but ERROR moves
// the resume point, bookmarks included.
static s_outcome_t s_on_event(vmlet_kube_watch_t *self, const cJSON *event)
{
    static const char *const types[] = {[VMLET_WATCH_ADDED] = "ADDED",
                                        [VMLET_WATCH_MODIFIED] = "MODIFIED",
                                        [VMLET_WATCH_DELETED] = "DELETED"};
    const char *type = s_str(event, "type", NULL);
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(event, "object");
    if (!type || !cJSON_IsObject(object))
        return s_fail_with(self, S_BAD_INPUT, "watch event without type or object");
    if (strcmp(type, "ERROR") == 0)
        return s_on_error_event(self, object);
    const char *rv = s_str(object, "metadata", "resourceVersion");
    if (!rv)
        return s_fail_with(self, S_BAD_INPUT, "%.32s event without metadata.resourceVersion", type);
    if (strcmp(type, "BOOKMARK") != 0) {
        size_t kind = VMLET_WATCH_ADDED;
        while (kind <= VMLET_WATCH_DELETED && strcmp(type, types[kind]) != 0)
            kind++;
        if (kind > VMLET_WATCH_DELETED)
            return s_fail_with(self, S_BAD_INPUT, "watch event of unknown type '%.32s'", type);
        if (s_send(self, (int)kind, object) < 0)
            return s_fail_with(self, S_CANCELLED, "stopping");
    }
    return s_set_rv(self, rv) < 0 ? s_fail_with(self, S_BROKEN, "out of memory") : S_OK;
}

static void s_succeeded(vmlet_kube_watch_t *self);

static int s_on_line(void *arg, char *line, size_t len)
{
    vmlet_kube_watch_t *self = arg;
    cJSON *event = cJSON_ParseWithLength(line, len);
    s_outcome_t outcome =
        event ? s_on_event(self, event)
              : s_fail_with(self, S_BAD_INPUT, "watch line is not JSON: %.80s", line);
    cJSON_Delete(event);
    if (outcome != S_OK)
        return 1;
    if (self->lines++ == 0)
        s_succeeded(self);
    return 0;
}

// One WATCH from self->rv until the stream ends, breaks or is cancelled.
static s_outcome_t s_watch(vmlet_kube_watch_t *self)
{
    long timeout_s = (long)(S_WATCH_TIMEOUT_S * (0.9 + 0.2 * vmlet_random01()));
    char head[96];
    snprintf(head, sizeof head, "watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld", timeout_s);
    cleanup_free char *path = s_path(self, head, "resourceVersion", self->rv);
    if (!path)
        return s_fail_with(self, S_BROKEN, "out of memory");
    self->why = S_OK;
    self->lines = 0;
    self->watching = true;
    int64_t start = vmlet_now_ms();
    long status = 0;
    vmlet_err_t err = {0};
    int rc = vmlet_kube_stream(self->kube, path, timeout_s * 1000 + S_WATCH_GRACE_MS, s_on_line,
                               self, &status, &err);
    self->watching = false;
    if (rc == VMLET_KUBE_STOPPED)
        return self->why;
    if (rc < 0)
        return s_fail_with(self,
                           err.code == ECANCELED ? S_CANCELLED
                           : status == 410       ? S_GONE
                                                 : S_BROKEN,
                           "WATCH: %s", err.msg);
    if (self->lines == 0 && vmlet_now_ms() - start < S_SHORT_WATCH_MS)
        return s_fail_with(self, S_BROKEN, "WATCH %s: closed at once, with no event", path);
    return S_OK;
}

// --- the thread: failures and the main loop ------------------------------------

static void s_succeeded(vmlet_kube_watch_t *self)
{
    if (self->failures) {
        vmlet_log_info(self->log, self->fields,
                       "watch recovered after %u failed attempts (the last: %s)", self->failures,
                       self->failure);
        s_send(self, S_MSG_RESUMED, NULL); // in sync again without a relist
    }
    self->failures = 0;
    self->last_failure = 0;
    vmlet_backoff_succeeded(&self->backoff);
}

// Logs the first failure of each kind in a row (not every retry), tells
// the loop, and waits out the back-off. A 410 relists at once, as client-go
// does, unless the last failure was a 410 too (a relist that did not help).
static void s_failed(vmlet_kube_watch_t *self, s_outcome_t outcome)
{
    int64_t delay = vmlet_backoff_failed(&self->backoff, vmlet_now_ms(), vmlet_random01());
    if (outcome == S_GONE && self->last_failure != S_GONE)
        delay = 0;
    if (outcome != self->last_failure) {
        vmlet_log_write(self->log, outcome == S_GONE ? VMLET_LOG_INFO : VMLET_LOG_WARN,
                        self->fields, "watch %s: %s; %s in %lld ms (repeats not logged)",
                        s_outcome_names[outcome], self->detail,
                        outcome == S_BROKEN ? "retrying" : "relisting", (long long)delay);
        self->last_failure = outcome;
    }
    memcpy(self->failure, self->detail, sizeof self->failure);
    self->failures++;
    self->recovering = true;
    s_send(self, S_MSG_FAILED, NULL);
    if (delay > 0)
        vmlet_kube_sleep(self->kube, (long)delay);
}

// One LIST (when needed) or WATCH; returns whether the next round must list.
static bool s_round(vmlet_kube_watch_t *self, bool need_list)
{
    if (atomic_exchange(&self->relist, false))
        need_list = true;
    if (self->recovering)
        s_send(self, S_MSG_RECONNECT, NULL);
    self->recovering = false;
    s_outcome_t outcome = need_list ? s_list(self) : s_watch(self);
    switch (outcome) {
    case S_OK:
        self->recovering = !need_list; // a WATCH ended: the next one resumes it
        if (!need_list)
            s_succeeded(self);
        return false;
    case S_CANCELLED:
        return need_list || atomic_load(&self->relist);
    case S_BROKEN:
        s_failed(self, outcome);
        return need_list;
    default: // S_GONE, S_BAD_INPUT
        s_failed(self, outcome);
        return true;
    }
}

static void *s_thread(void *arg)
{
    vmlet_kube_watch_t *self = arg;
    bool need_list = true;
    while (!atomic_load(&self->stop))
        need_list = s_round(self, need_list);
    return NULL;
}

// --- the owner's side ----------------------------------------------------------

static void s_deliver(vmlet_kube_watch_t *self, const unsigned char *data, size_t size)
{
    int kind = data[0];
    if (kind == S_MSG_RECONNECT) {
        vmlet_counter_inc(self->reconnects);
        return;
    }
    if (kind == S_MSG_FAILED || kind == S_MSG_RESUMED || kind == VMLET_WATCH_LIST_END) {
        self->synced = kind != S_MSG_FAILED;
        vmlet_gauge_set(self->synced_gauge, self->synced);
    }
    if (kind == S_MSG_FAILED || kind == S_MSG_RESUMED)
        return;
    if (kind == VMLET_WATCH_LIST_BEGIN)
        vmlet_counter_inc(self->lists);
    cJSON *object = NULL;
    if (size > 1) {
        object = cJSON_ParseWithLength((const char *)data + 1, size - 1);
        if (!object) // printed by our own thread: cannot happen short of memory
            return;
        vmlet_counter_inc(self->events[kind]);
    }
    if (self->fn)
        self->fn(self->arg, (vmlet_watch_event_t)kind, object);
    cJSON_Delete(object);
}

static int s_on_pipe(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    vmlet_kube_watch_t *self = arg;
    void *socket = zsock_resolve(reader);
    for (int i = 0; i < S_BATCH; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        if (zmq_msg_size(&msg) > 0)
            s_deliver(self, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
    }
    return 0;
}

static int s_open_pipes(vmlet_kube_watch_t *self)
{
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "inproc://vmlet-kube-watch-%p-%llx", (void *)self,
             (unsigned long long)vmlet_random_u64());
    self->pipe = zsock_new(ZMQ_PAIR);
    self->thread_pipe = zsock_new(ZMQ_PAIR);
    if (!self->pipe || !self->thread_pipe)
        return -1;
    zsock_set_linger(self->pipe, 0);
    zsock_set_linger(self->thread_pipe, 0);
    zsock_set_rcvhwm(self->pipe, S_PIPE_HWM);
    zsock_set_sndhwm(self->thread_pipe, S_PIPE_HWM);
    zsock_set_sndtimeo(self->thread_pipe, S_SEND_TIMEOUT_MS);
    if (zsock_bind(self->pipe, "%s", endpoint) < 0 ||
        zsock_connect(self->thread_pipe, "%s", endpoint) < 0)
        return -1;
    return 0;
}

int vmlet_kube_watch_attach(vmlet_kube_watch_t *self, zloop_t *loop, vmlet_err_t *err)
{
    if (self->started)
        return vmlet_err_set(err, "watch %s: already attached", self->collection);
    if (s_open_pipes(self) < 0)
        return vmlet_err_set(err, "watch %s: cannot open the inproc pipe", self->collection);
    if (zloop_reader(loop, self->pipe, s_on_pipe, self) < 0)
        return vmlet_err_set(err, "watch %s: cannot add the pipe to the loop", self->collection);
    self->loop = loop;
    // Signals are the loop's business (signals.h), whenever this runs.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&self->thread, NULL, s_thread, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return vmlet_err_errno(err, rc, "watch %s: cannot start its thread", self->collection);
    pthread_setname_np(self->thread, "kube-watch");
    self->started = true;
    return 0;
}

void vmlet_kube_watch_relist(vmlet_kube_watch_t *self)
{
    atomic_store(&self->relist, true);
    if (self->kube)
        vmlet_kube_wakeup(self->kube);
}

bool vmlet_kube_watch_synced(const vmlet_kube_watch_t *self)
{
    return self->synced;
}

void vmlet_kube_watch_destroy(vmlet_kube_watch_t **self_p)
{
    vmlet_kube_watch_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->started) {
        atomic_store(&self->stop, true);
        vmlet_kube_wakeup(self->kube);
        pthread_join(self->thread, NULL);
    }
    if (self->loop && self->pipe)
        zloop_reader_end(self->loop, self->pipe);
    zsock_destroy(&self->pipe);
    zsock_destroy(&self->thread_pipe);
    vmlet_kube_destroy(&self->kube);
    free(self->collection);
    free(self->field_selector);
    free(self->label_selector);
    free(self->rv);
    free(self);
    *self_p = NULL;
}
