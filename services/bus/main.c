// vmlet-bus: the message broker every other service connects to.
#include "broker.h"
#include "broker_auth.h"

#include "vmlet/service.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *publish_bind;
    char *subscribe_bind;
    char *work_bind;
    long hwm;
    int64_t heartbeat_ms;
    long liveness;
    long max_queue;
    char *curve_cert;
    char *curve_authorized;
} settings_t;

#define OPT(field) offsetof(settings_t, field)
static const vmlet_cfg_option_t options[] = {
    {"publish-bind", VMLET_CFG_STRING, "tcp://127.0.0.1:7101", 0, 0, NULL, OPT(publish_bind),
     "where publishers send events (XSUB)"},
    {"subscribe-bind", VMLET_CFG_STRING, "tcp://127.0.0.1:7102", 0, 0, NULL,
     OPT(subscribe_bind), "where subscribers receive events (XPUB)"},
    {"work-bind", VMLET_CFG_STRING, "tcp://127.0.0.1:7103", 0, 0, NULL, OPT(work_bind),
     "where workers and clients exchange work items (ROUTER)"},
    {"hwm", VMLET_CFG_INT, "10000", 100, 10000000, NULL, OPT(hwm),
     "event messages queued per subscriber before it misses some (it counts them)"},
    {"heartbeat", VMLET_CFG_DURATION, "1s", 50, 60000, NULL, OPT(heartbeat_ms),
     "how often workers must be heard from"},
    {"liveness", VMLET_CFG_INT, "3", 2, 100, NULL, OPT(liveness),
     "heartbeats a worker may miss before its items go to another"},
    {"max-queue", VMLET_CFG_INT, "100000", 1, 100000000, NULL, OPT(max_queue),
     "work items a queue holds (waiting and in flight) before refusing more"},
    {"curve-cert", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(curve_cert),
     "the broker's certificate (_secret file of --make-cert); set: every socket needs CURVE"},
    {"curve-authorized", VMLET_CFG_STRING, "", 0, 0, NULL, OPT(curve_authorized),
     "directory of the public certificates of the services allowed on the bus"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static void *s_start(vmlet_service_t *service, vmlet_err_t *err)
{
    const settings_t *s = vmlet_service_def(service)->settings;
    broker_options_t broker_options = {
        .publish_bind = s->publish_bind,
        .subscribe_bind = s->subscribe_bind,
        .work_bind = s->work_bind,
        .hwm = (int)s->hwm,
        .heartbeat_ms = s->heartbeat_ms,
        .liveness = (int)s->liveness,
        .max_queue = (size_t)s->max_queue,
        .curve_cert = s->curve_cert,
        .curve_authorized = s->curve_authorized,
    };
    broker_t *broker =
        broker_new(&broker_options, vmlet_service_metrics(service), vmlet_service_log(service), err);
    if (broker && broker_attach(broker, vmlet_service_loop(service), err) < 0)
        broker_destroy(&broker);
    return broker;
}

static void s_stop(void **broker_p)
{
    broker_destroy((broker_t **)broker_p);
}

// `vmlet-bus --make-cert PATH`: a mode, not a setting, so making
// certificates needs no other tool (compose, docs) and no running broker.
static int s_make_cert(const char *path)
{
    vmlet_err_t err = {0};
    if (broker_auth_make_cert(path, &err) < 0) {
        fprintf(stderr, "vmlet-bus: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (public: give it to the broker's --curve-authorized or to clients' "
           "--bus-curve-server-key) and %s_secret (keep it private)\n",
           path, path);
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc == 3 && strcmp(argv[1], "--make-cert") == 0)
        return s_make_cert(argv[2]);
    if (argc == 2 && strncmp(argv[1], "--make-cert=", 12) == 0)
        return s_make_cert(argv[1] + 12);
    settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "bus",
        .summary = "the broker: event fan-out (XSUB/XPUB) and load-balanced work queues",
        .default_http_listen = "127.0.0.1:9100",
        .standalone = true,
        .options = options,
        .settings = &settings,
        .start = s_start,
        .stop = s_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
