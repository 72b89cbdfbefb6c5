// vmlet-vmm-host: starts VMMs for vm-launcher so the VMs are not in the
// launcher's container: restarting or replacing the launcher leaves them
// running, and the new launcher adopts them. The VMs live and die with
// this small process, which changes rarely (see README.md, "vmm-host").
#include "vmm_host_server.h"

#include "vmlet/service.h"

#include <stddef.h>

typedef struct {
    char *socket;
    char *allow;
} settings_t;

#define OPT(field) offsetof(settings_t, field)
static const vmlet_cfg_option_t options[] = {
    {"socket", VMLET_CFG_STRING, "/run/vmlet/vmm-host.sock", 0, 0, NULL, OPT(socket),
     "unix socket where vm-launcher (its --vmm-host) asks for VMMs (mode 0600)"},
    {"allow", VMLET_CFG_STRING, "qemu-system-x86_64,firecracker", 0, 0, NULL, OPT(allow),
     "the commands a request may run, comma-separated, compared exactly with its argv[0]"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static void *s_start(vmlet_service_t *service, vmlet_err_t *err)
{
    const settings_t *s = vmlet_service_def(service)->settings;
    vmm_host_settings_t hs = {.socket_path = s->socket, .allow = s->allow};
    vmm_host_server_t *server =
        vmm_host_server_new(&hs, vmlet_service_metrics(service), vmlet_service_log(service), err);
    if (server && vmm_host_server_attach(server, vmlet_service_loop(service), err) < 0)
        vmm_host_server_destroy(&server);
    return server;
}

static void s_stop(void **server_p)
{
    vmm_host_server_destroy((vmm_host_server_t **)server_p);
}

int main(int argc, char *argv[])
{
    settings_t settings = {0};
    const vmlet_service_def_t def = {
        .name = "vmm-host",
        .summary = "starts VMMs for vm-launcher, so VMs outlive the launcher's container",
        .default_http_listen = "127.0.0.1:9107",
        .standalone = true,
        .options = options,
        .settings = &settings,
        .start = s_start,
        .stop = s_stop,
    };
    return vmlet_service_main(&def, argc, argv);
}
