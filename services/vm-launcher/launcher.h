// vm-launcher's domain object: it boots each pod bound to the node as its
// own micro-VM (QEMU microvm or Firecracker), runs its containers through
// the guest agent, keeps their logs, and reports what happens as VmEvents;
// it announces this host's capacity so k8s-watcher can report it in the
// Node. See README.md for the settings, messages and states.
#ifndef VMLET_LAUNCHER_H
#define VMLET_LAUNCHER_H

#include "vmlet/service.h"

typedef struct {
    char *launcher_id;
    char *reserve_cpu;
    char *reserve_memory;
    long max_pods;
    int64_t announce_interval_ms;
    int64_t stats_interval_ms;
    int64_t volume_refresh_interval_ms;
    char *kubeconfig;
    char *host_ip;
    char *state_dir;
    char *log_dir;
    char *container_log_max_size;
    long container_log_max_files;
    // the VMs
    char *vmm;
    char *qemu_binary;
    char *firecracker_binary;
    char *vmm_host;
    char *accel;
    long tcg_tb_size_mib;
    char *kernel;
    char *initramfs;
    char *kernel_cmdline;
    long default_vcpus;
    char *default_memory;
    char *guest_memory_overhead;
    char *vmm_memory_overhead;
    char *scratch_disk_size;
    int64_t boot_timeout_ms;
    bool templates;       // restore pods' VMs from templates (vm_template.h)
    char *template_dir;
    long template_disks;  // disk slots of every template VM
    int64_t crashloop_backoff_initial_ms;
    int64_t crashloop_backoff_max_ms;
    // the network
    char *net_netns;
    char *net_bridge;
    char *pod_cidr;
    char *pod_gateway;
    long net_mtu;
    char *net_host_veth;
    char *net_link_cidr;
    bool net_nat;
    // DNS for the pods
    char *cluster_dns;
    char *cluster_domain;
    char *resolv_conf;
    bool stop_vms_on_exit;
    bool accept_pods;
    // sessions (kubectl logs/exec/attach/port-forward from the kubelet API)
    char *session_listen;
    char *session_advertise;
} launcher_settings_t;

extern const vmlet_cfg_option_t launcher_options[];

void *launcher_start(vmlet_service_t *service, vmlet_err_t *err);
void launcher_stop(void **self_p);

// Bus handlers (routes in main.c).
int launcher_on_launch(void *self, const vmlet_envelope_t *env);
int launcher_on_stop(void *self, const vmlet_envelope_t *env);
int launcher_on_restart(void *self, const vmlet_envelope_t *env);
int launcher_on_pod_desired(void *self, const vmlet_envelope_t *env);
int launcher_on_pod_deleted(void *self, const vmlet_envelope_t *env);
int launcher_on_image(void *self, const vmlet_envelope_t *env);
int launcher_on_exec(void *self, const vmlet_envelope_t *env);

#endif
