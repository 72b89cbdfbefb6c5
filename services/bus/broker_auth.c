// CURVE on the broker's sockets: zauth and refusal counting (see broker_auth.h).
#include "broker_auth.h"

#include "vmlet/bus_curve.h"
#include "vmlet/timeutil.h"

#include <string.h>
#include <sys/stat.h>

#define SOCKETS_MAX 3
#define LOG_EVERY_MS 10000 // a refused peer retries every 100 ms; one line per socket this often
#define FAILED_HANDSHAKES                                                                          \
    (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                       \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

// Why a handshake failed.
enum { DENIED, NO_CURVE, REASONS };
static const char *const reason_names[REASONS] = {"denied", "no-curve"};
static const char *const reason_texts[REASONS] = {
    "certificate not in --curve-authorized",          // ZAP said no
    "peer without CURVE or with another broker key"}; // or any other failed handshake

typedef struct {
    char name[16];
    zsock_t *monitor;
    vmlet_metric_t *refused[REASONS];
    uint64_t since_log[REASONS];
    int64_t last_log_ms[REASONS];
} watched_t;

struct _broker_auth_t {
    zactor_t *zauth;
    zcert_t *cert;
    zloop_t *loop;
    vmlet_metrics_t *metrics;
    vmlet_log_t *log;
    watched_t sockets[SOCKETS_MAX];
    size_t n_sockets;
};

broker_auth_t *broker_auth_new(const char *cert, const char *authorized, vmlet_metrics_t *metrics,
                               vmlet_log_t *log, vmlet_err_t *err)
{
    if (!zsys_has_curve()) {
        vmlet_err_set(err, "CURVE asked for, but this libzmq was built without it");
        return NULL;
    }
    struct stat st;
    if (!authorized || !authorized[0] || stat(authorized, &st) < 0 || !S_ISDIR(st.st_mode)) {
        vmlet_err_set(err,
                      "--curve-authorized '%s' is not a directory (it holds the public "
                      "certificates of the allowed services)",
                      authorized ? authorized : "");
        return NULL;
    }
    broker_auth_t *self = calloc(1, sizeof *self);
    if (!self) {
        vmlet_err_set(err, "broker auth: out of memory");
        return NULL;
    }
    self->metrics = metrics;
    self->log = log;
    vmlet_err_t why = {0};
    if (!(self->cert = vmlet_bus_curve_load_secret(cert, &why))) {
        vmlet_err_set(err, "--curve-cert: %s", why.msg);
        broker_auth_destroy(&self);
        return NULL;
    }
    // zauth answers ZAP requests for every socket of the process's
    // context. Its certificate store re-reads the directory when the
    // directory changes, so adding or removing a service needs no restart.
    self->zauth = zactor_new(zauth, NULL);
    if (!self->zauth || zstr_sendx(self->zauth, "CURVE", authorized, NULL) < 0 ||
        zsock_wait(self->zauth) < 0) {
        vmlet_err_set(err, "broker auth: cannot start zauth");
        broker_auth_destroy(&self);
        return NULL;
    }
    return self;
}

void broker_auth_destroy(broker_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_auth_t *self = *self_p;
    for (size_t i = 0; i < self->n_sockets; i++) {
        if (self->loop)
            zloop_reader_end(self->loop, self->sockets[i].monitor);
        zsock_destroy(&self->sockets[i].monitor);
    }
    zactor_destroy(&self->zauth);
    zcert_destroy(&self->cert);
    free(self);
    *self_p = NULL;
}

static zsock_t *s_monitor(zsock_t *sock)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://vmlet-auth-%p", (void *)sock);
    if (zmq_socket_monitor(zsock_resolve(sock), endpoint, FAILED_HANDSHAKES) < 0)
        return NULL;
    zsock_t *monitor = zsock_new(ZMQ_PAIR);
    if (monitor && zsock_connect(monitor, "%s", endpoint) < 0)
        zsock_destroy(&monitor);
    return monitor;
}

static vmlet_metric_t *s_counter(broker_auth_t *self, const char *socket, const char *reason)
{
    char labels[96];
    snprintf(labels, sizeof labels, "socket=\"%s\",reason=\"%s\"", socket, reason);
    return vmlet_metrics_counter(self->metrics, "vmlet_bus_broker_auth_refused_total",
                                 "Bus peers refused at the CURVE handshake: reason=\"denied\" "
                                 "(certificate not authorised), \"no-curve\" (no or wrong "
                                 "CURVE).",
                                 labels);
}

int broker_auth_secure(broker_auth_t *self, zsock_t *sock, const char *name, vmlet_err_t *err)
{
    if (self->n_sockets == SOCKETS_MAX)
        return vmlet_err_set(err, "broker auth: more than %d sockets", SOCKETS_MAX);
    watched_t *w = &self->sockets[self->n_sockets];
    zsock_set_curve_server(sock, 1);
    zcert_apply(self->cert, sock);
    zsock_set_zap_domain(sock, "vmlet");
    if (!(w->monitor = s_monitor(sock)))
        return vmlet_err_set(err, "broker auth: cannot watch the %s socket", name);
    snprintf(w->name, sizeof w->name, "%s", name);
    for (int r = 0; r < REASONS; r++)
        w->refused[r] = s_counter(self, name, reason_names[r]);
    self->n_sockets++;
    return 0;
}

// Counts each failed handshake; logs the first, then one line per
// LOG_EVERY_MS with how many came meanwhile.
static int s_on_monitor(zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    broker_auth_t *self = arg;
    watched_t *w = NULL;
    for (size_t i = 0; i < self->n_sockets; i++)
        if (self->sockets[i].monitor == reader)
            w = &self->sockets[i];
    zmsg_t *msg;
    while (w && (zsock_events(reader) & ZMQ_POLLIN) && (msg = zmsg_recv(reader))) {
        // Each event is [uint16 event, uint32 value][endpoint].
        zframe_t *head = zmsg_first(msg);
        uint16_t event = 0;
        uint32_t value = 0;
        if (head && zframe_size(head) >= 6) {
            memcpy(&event, zframe_data(head), sizeof event);
            memcpy(&value, zframe_data(head) + 2, sizeof value);
        }
        zmsg_destroy(&msg);
        int r = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? DENIED : NO_CURVE;
        vmlet_counter_inc(w->refused[r]);
        w->since_log[r]++;
        int64_t now = vmlet_now_ms();
        if (w->last_log_ms[r] && now - w->last_log_ms[r] < LOG_EVERY_MS)
            continue;
        char code[16];
        snprintf(code, sizeof code, "%u", (unsigned)value);
        vmlet_log_warn(self->log,
                       VMLET_KV({"socket", w->name}, {"reason", reason_names[r]}, {"code", code}),
                       "refused %llu bus peer handshakes: %s", (unsigned long long)w->since_log[r],
                       reason_texts[r]);
        w->since_log[r] = 0;
        w->last_log_ms[r] = now;
    }
    return 0;
}

int broker_auth_attach(broker_auth_t *self, zloop_t *loop, vmlet_err_t *err)
{
    self->loop = loop;
    for (size_t i = 0; i < self->n_sockets; i++)
        if (zloop_reader(loop, self->sockets[i].monitor, s_on_monitor, self) < 0)
            return vmlet_err_set(err, "broker auth: cannot watch handshakes");
    return 0;
}

int broker_auth_make_cert(const char *path, vmlet_err_t *err)
{
    zcert_t *cert = zcert_new();
    if (!cert)
        return vmlet_err_set(err, "make cert %s: out of memory", path);
    const char *slash = strrchr(path, '/');
    zcert_set_meta(cert, "name", "%s", slash ? slash + 1 : path);
    // Born private: no moment where another user could read the secret.
    mode_t mask = umask(077);
    int rc = zcert_save(cert, path);
    umask(mask);
    zcert_destroy(&cert);
    char secret[1024];
    snprintf(secret, sizeof secret, "%s_secret", path);
    if (rc < 0 || chmod(path, 0644) < 0 || chmod(secret, 0600) < 0)
        return vmlet_err_set(err, "make cert: cannot write %s and %s (does the directory exist?)",
                             path, secret);
    return 0;
}
