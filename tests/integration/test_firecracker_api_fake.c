// The Firecracker backend against a FAKE Firecracker: Firecracker needs
// working KVM, which these machines lack (DESIGN.md §4), and is not
// packaged in Debian. So this test checks what can be checked without it:
// every API request the backend sends is validated against Firecracker's
// published contract (tests/contracts/firecracker-api.yaml, parsed here
// with libyaml), the fake answers as the contract says (204, or 400 with a
// fault_message), and the backend must surface that fault_message. The
// vsock "CONNECT <port>\n" / "OK <n>\n" handshake is checked against the
// fake's vsock UDS.
//
// The fake is this same binary: started under the name "firecracker"
// (a symlink the test makes), it behaves as `firecracker --api-sock P --id I`
// and `firecracker --version`, and logs each request as a JSON line to
// $FAKE_FC_LOG for the test to read.
#include "testsupport.h"

#include "firecracker_api.h"
#include "vmm_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#define AGENT_PORT 1024
#define FAKE_GREETING "guest-agent-hello\n"

// --- the contract: a YAML tree from libyaml's events -------------------------

typedef enum { Y_SCALAR, Y_MAP, Y_SEQ } ykind_t;
typedef struct ynode {
    ykind_t kind;
    char *text;           // Y_SCALAR
    struct ynode **items; // Y_MAP: key, value, key, value...; Y_SEQ: values
    size_t n;
} ynode_t;

static ynode_t *y_parse_node(yaml_parser_t *p, yaml_event_t *ev);

static ynode_t *y_parse_children(yaml_parser_t *p, ykind_t kind, yaml_event_type_t end)
{
    ynode_t *node = calloc(1, sizeof *node);
    node->kind = kind;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev))
            return node;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return node;
        }
        ynode_t *child = y_parse_node(p, &ev);
        node->items = realloc(node->items, (node->n + 1) * sizeof *node->items);
        node->items[node->n++] = child;
    }
}

// Takes ownership of ev.
static ynode_t *y_parse_node(yaml_parser_t *p, yaml_event_t *ev)
{
    ynode_t *node;
    if (ev->type == YAML_SCALAR_EVENT) {
        node = calloc(1, sizeof *node);
        node->kind = Y_SCALAR;
        node->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        node = y_parse_children(p, Y_MAP, YAML_MAPPING_END_EVENT);
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        node = y_parse_children(p, Y_SEQ, YAML_SEQUENCE_END_EVENT);
    } else {
        node = calloc(1, sizeof *node); // aliases are not used by the contract
        node->kind = Y_SCALAR;
        node->text = strdup("");
    }
    yaml_event_delete(ev);
    return node;
}

static ynode_t *y_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    ynode_t *root = NULL;
    yaml_event_t ev;
    while (!root && yaml_parser_parse(&p, &ev)) {
        if (ev.type == YAML_MAPPING_START_EVENT) {
            root = y_parse_node(&p, &ev);
        } else {
            bool end = ev.type == YAML_STREAM_END_EVENT;
            yaml_event_delete(&ev);
            if (end)
                break;
        }
    }
    yaml_parser_delete(&p);
    fclose(f);
    return root;
}

static const ynode_t *y_get(const ynode_t *map, const char *key)
{
    if (!map || map->kind != Y_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (map->items[i]->kind == Y_SCALAR && strcmp(map->items[i]->text, key) == 0)
            return map->items[i + 1];
    return NULL;
}

static const char *y_text(const ynode_t *node)
{
    return node && node->kind == Y_SCALAR ? node->text : NULL;
}

// --- validating a JSON value against a swagger 2.0 schema --------------------

static const ynode_t *s_contract;

static const ynode_t *s_resolve(const ynode_t *schema)
{
    const char *ref = y_text(y_get(schema, "$ref"));
    const char *prefix = "#/definitions/";
    if (ref && strncmp(ref, prefix, strlen(prefix)) == 0)
        return y_get(y_get(s_contract, "definitions"), ref + strlen(prefix));
    return schema;
}

// Fills fault and returns false when value breaks schema. Unknown object
// members are refused: Firecracker deserialises every request body with
// serde's deny_unknown_fields, which the swagger file does not spell out.
static bool s_validate(const ynode_t *schema, const cJSON *value, const char *where, char *fault,
                       size_t cap)
{
    schema = s_resolve(schema);
    if (!schema) {
        snprintf(fault, cap, "%s: the contract has no such definition", where);
        return false;
    }
    const char *type = y_text(y_get(schema, "type"));
    if (!type)
        return true;
    if (strcmp(type, "object") == 0) {
        if (!cJSON_IsObject(value)) {
            snprintf(fault, cap, "%s: want a JSON object", where);
            return false;
        }
        const ynode_t *required = y_get(schema, "required");
        for (size_t i = 0; required && i < required->n; i++)
            if (!cJSON_GetObjectItemCaseSensitive(value, required->items[i]->text)) {
                snprintf(fault, cap, "%s: missing required property %s", where,
                         required->items[i]->text);
                return false;
            }
        const ynode_t *props = y_get(schema, "properties");
        const cJSON *member;
        cJSON_ArrayForEach(member, value)
        {
            const ynode_t *prop = y_get(props, member->string);
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", where, member->string);
            if (!prop) {
                snprintf(fault, cap, "%s: unknown property", sub);
                return false;
            }
            if (!s_validate(prop, member, sub, fault, cap))
                return false;
        }
        return true;
    }
    if (strcmp(type, "string") == 0) {
        if (!cJSON_IsString(value)) {
            snprintf(fault, cap, "%s: want a string", where);
            return false;
        }
        const ynode_t *choices = y_get(schema, "enum");
        if (!choices)
            return true;
        for (size_t i = 0; i < choices->n; i++)
            if (strcmp(choices->items[i]->text, value->valuestring) == 0)
                return true;
        snprintf(fault, cap, "%s: \"%s\" is not one of the contract's values", where,
                 value->valuestring);
        return false;
    }
    if (strcmp(type, "integer") == 0) {
        if (!cJSON_IsNumber(value) || value->valuedouble != (double)(long long)value->valuedouble) {
            snprintf(fault, cap, "%s: want an integer", where);
            return false;
        }
        const char *min = y_text(y_get(schema, "minimum"));
        const char *max = y_text(y_get(schema, "maximum"));
        if (min && value->valuedouble < atof(min)) {
            snprintf(fault, cap, "%s: %.0f is below the minimum %s", where, value->valuedouble,
                     min);
            return false;
        }
        if (max && value->valuedouble > atof(max)) {
            snprintf(fault, cap, "%s: %.0f is above the maximum %s", where, value->valuedouble,
                     max);
            return false;
        }
        return true;
    }
    if (strcmp(type, "boolean") == 0) {
        if (!cJSON_IsBool(value)) {
            snprintf(fault, cap, "%s: want true or false", where);
            return false;
        }
        return true;
    }
    if (strcmp(type, "array") == 0) {
        if (!cJSON_IsArray(value)) {
            snprintf(fault, cap, "%s: want an array", where);
            return false;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, value)
        {
            if (!s_validate(y_get(schema, "items"), item, where, fault, cap))
                return false;
        }
        return true;
    }
    return true;
}

// The contract's path item for a concrete path ("/drives/disk0" matches
// "/drives/{drive_id}").
static const ynode_t *s_match_path(const char *path)
{
    const ynode_t *paths = y_get(s_contract, "paths");
    for (size_t i = 0; paths && i + 1 < paths->n; i += 2) {
        const char *tpl = paths->items[i]->text, *p = path;
        while (*tpl && *p) {
            if (*tpl == '{') {
                if (*p == '/')
                    break;
                tpl = strchr(tpl, '}') + 1;
                p += strcspn(p, "/");
            } else if (*tpl++ != *p++) {
                break;
            }
        }
        if (!*tpl && !*p)
            return paths->items[i + 1];
    }
    return NULL;
}

// Checks one request. Returns the HTTP status and fills fault for a 400.
static int s_check_request(const char *method, const char *path, const char *body, char *fault,
                           size_t cap)
{
    const ynode_t *item = s_match_path(path);
    char lower[16];
    size_t i = 0;
    for (; method[i] && i + 1 < sizeof lower; i++)
        lower[i] = (char)(method[i] | 0x20);
    lower[i] = '\0';
    const ynode_t *op = y_get(item, lower);
    if (!op) {
        snprintf(fault, cap, "Invalid request method and/or path: %s %s.", method, path);
        return 400;
    }
    const ynode_t *params = y_get(op, "parameters");
    for (size_t k = 0; params && k < params->n; k++) {
        const ynode_t *param = params->items[k];
        if (!y_text(y_get(param, "in")) || strcmp(y_text(y_get(param, "in")), "body") != 0)
            continue;
        bool required = y_text(y_get(param, "required")) &&
                        strcmp(y_text(y_get(param, "required")), "true") == 0;
        if (!body || !*body) {
            if (required) {
                snprintf(fault, cap, "%s %s: the contract requires a body", method, path);
                return 400;
            }
            return 204;
        }
        cJSON *json = cJSON_Parse(body);
        if (!json) {
            snprintf(fault, cap, "%s %s: the body is not JSON", method, path);
            return 400;
        }
        bool ok = s_validate(y_get(param, "schema"), json, "body", fault, cap);
        cJSON_Delete(json);
        return ok ? 204 : 400;
    }
    return strcmp(method, "GET") == 0 ? 200 : 204;
}

// --- the fake firecracker process ------------------------------------------------

typedef struct {
    int fd;
    bool vsock;     // a vsock UDS client, else an API client
    bool connected; // vsock: past the CONNECT handshake
    char buf[65536];
    size_t len;
} s_client_t;

static int s_listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 8) < 0)
        return -1;
    return fd;
}

static void s_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static void s_respond(int fd, int status, const char *json)
{
    char head[256];
    const char *reason = status == 200 ? "OK" : status == 204 ? "No Content" : "Bad Request";
    size_t len = json ? strlen(json) : 0;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
                     "%sContent-Length: %zu\r\n\r\n",
                     status, reason, json ? "Content-Type: application/json\r\n" : "", len);
    s_write_all(fd, head, (size_t)n);
    if (json)
        s_write_all(fd, json, len);
}

typedef struct {
    const char *id;
    FILE *log;
    bool boot_source, started;
    char vsock_path[108];
    int vsock_listen;
    bool exit_now;
} s_fake_t;

// Handles complete requests in c->buf; returns false when the client should go.
static bool s_serve_api(s_fake_t *fake, s_client_t *c)
{
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return true;
        char method[16], path[256];
        if (sscanf(c->buf, "%15s %255s", method, path) != 2)
            return false;
        size_t body_len = 0;
        const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        if (cl && cl < end)
            body_len = strtoul(cl + 17, NULL, 10);
        size_t total = (size_t)(end + 4 - c->buf) + body_len;
        if (total > sizeof c->buf - 1)
            return false;
        if (c->len < total)
            return true;
        char *body = strndup(end + 4, body_len);
        char fault[512] = "";
        int status = s_check_request(method, path, body, fault, sizeof fault);
        cJSON *json = body_len ? cJSON_Parse(body) : NULL;
        // What Firecracker itself checks beyond the contract's shapes.
        if (status == 204 && strcmp(path, "/boot-source") == 0)
            fake->boot_source = true;
        if (status == 204 && strcmp(path, "/vsock") == 0)
            snprintf(fake->vsock_path, sizeof fake->vsock_path, "%s",
                     cJSON_GetStringValue(cJSON_GetObjectItem(json, "uds_path")));
        const char *action = cJSON_GetStringValue(cJSON_GetObjectItem(json, "action_type"));
        if (status == 204 && strcmp(path, "/actions") == 0 && action) {
            if (strcmp(action, "InstanceStart") == 0 && !fake->boot_source) {
                status = 400;
                snprintf(fault, sizeof fault, "Cannot start microvm without kernel configuration.");
            } else if (strcmp(action, "InstanceStart") == 0) {
                fake->started = true;
                if (fake->vsock_path[0]) {
                    unlink(fake->vsock_path);
                    fake->vsock_listen = s_listen_unix(fake->vsock_path);
                }
            } else if (strcmp(action, "SendCtrlAltDel") == 0) {
                fake->exit_now = true; // the guest powers off; Firecracker exits
            }
        }
        // Logged before the answer, so the test sees it once the client has its answer.
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "method", method);
        cJSON_AddStringToObject(line, "path", path);
        cJSON_AddItemToObject(line, "body", json ? json : cJSON_CreateNull());
        cJSON_AddNumberToObject(line, "status", status);
        if (fault[0])
            cJSON_AddStringToObject(line, "fault", fault);
        char *logged = cJSON_PrintUnformatted(line);
        fprintf(fake->log, "%s\n", logged);
        fflush(fake->log);
        free(logged);
        cJSON_Delete(line);
        if (status >= 400) {
            cJSON *err = cJSON_CreateObject();
            cJSON_AddStringToObject(err, "fault_message", fault);
            char *text = cJSON_PrintUnformatted(err);
            s_respond(c->fd, status, text);
            free(text);
            cJSON_Delete(err);
        } else if (status == 200) {
            char info[256];
            snprintf(info, sizeof info,
                     "{\"app_name\":\"Firecracker\",\"id\":\"%s\",\"state\":\"%s\","
                     "\"vmm_version\":\"1.8.0\"}",
                     fake->id, fake->started ? "Running" : "Not started");
            s_respond(c->fd, status, info);
        } else {
            s_respond(c->fd, status, NULL);
        }
        free(body);
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

// vsock UDS: "CONNECT <port>\n" -> "OK <n>\n" for the agent's port (then an
// echo, with the guest's greeting in the same write as the OK, so a client
// that reads past the OK line loses it); nothing listens elsewhere.
static bool s_serve_vsock(s_client_t *c)
{
    if (c->connected) {
        s_write_all(c->fd, c->buf, c->len);
        c->len = 0;
        return true;
    }
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl)
        return c->len < 64;
    unsigned port = 0;
    if (sscanf(c->buf, "CONNECT %u", &port) != 1)
        return false;
    if (port == 7) {
        s_write_all(c->fd, "NOPE\n", 5);
        return false;
    }
    if (port != AGENT_PORT)
        return false; // Firecracker closes the connection: nobody listens there
    const char ok[] = "OK 1073741824\n" FAKE_GREETING;
    s_write_all(c->fd, ok, sizeof ok - 1);
    c->connected = true;
    size_t rest = c->len - (size_t)(nl + 1 - c->buf);
    memmove(c->buf, nl + 1, rest);
    c->len = rest;
    if (c->len)
        return s_serve_vsock(c);
    return true;
}

static int fake_main(int argc, char **argv)
{
    const char *api_sock = NULL, *id = "anonymous";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            const char *v = getenv("FAKE_FC_VERSION");
            printf("Firecracker v%s\n\nSupported snapshot data format versions: v1.0.0\n",
                   v ? v : "1.8.0");
            return 0;
        }
        if (strcmp(argv[i], "--api-sock") == 0 && i + 1 < argc)
            api_sock = argv[++i];
        else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
            id = argv[++i];
    }
    s_contract = y_load(getenv("FAKE_FC_CONTRACT"));
    const char *log_path = getenv("FAKE_FC_LOG");
    if (!api_sock || !s_contract || !log_path) {
        fprintf(stderr, "fake firecracker: need --api-sock, $FAKE_FC_CONTRACT, $FAKE_FC_LOG\n");
        return 1;
    }
    s_fake_t fake = {.id = id, .log = fopen(log_path, "a"), .vsock_listen = -1};
    int api_listen = s_listen_unix(api_sock);
    if (api_listen < 0 || !fake.log) {
        fprintf(stderr, "fake firecracker: %s: %s\n", api_sock, strerror(errno));
        return 1;
    }
    fprintf(stderr, "fake firecracker %s listening on %s\n", id, api_sock);
    s_client_t *clients[16] = {0};
    while (!fake.exit_now) {
        struct pollfd fds[18];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = api_listen, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = fake.vsock_listen, .events = POLLIN};
        for (int i = 0; i < 16; i++)
            fds[n++] = (struct pollfd){.fd = clients[i] ? clients[i]->fd : -1, .events = POLLIN};
        if (poll(fds, (nfds_t)n, -1) < 0)
            continue;
        for (int l = 0; l < 2; l++) {
            if (!(fds[l].revents & POLLIN))
                continue;
            int fd = accept4(fds[l].fd, NULL, NULL, SOCK_CLOEXEC);
            for (int i = 0; fd >= 0 && i < 16; i++)
                if (!clients[i]) {
                    clients[i] = calloc(1, sizeof *clients[i]);
                    clients[i]->fd = fd;
                    clients[i]->vsock = l == 1;
                    fd = -1;
                }
            if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < 16; i++) {
            s_client_t *c = clients[i];
            if (!c || !(fds[2 + i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            bool keep = got > 0;
            if (keep) {
                c->len += (size_t)got;
                keep = c->vsock ? s_serve_vsock(c) : s_serve_api(&fake, c);
            }
            if (!keep) {
                close(c->fd);
                free(c);
                clients[i] = NULL;
            }
        }
    }
    return 0;
}

// --- the tests ---------------------------------------------------------------------

static struct {
    char *dir;
    char fc_bin[700];
    char log[700];
    char contract[512];
    kvm_probe_t kvm; // forced: the fake needs no KVM
} g;

static int group_setup(void **state)
{
    (void)state;
    g.dir = ts_tempdir("vmlet-fc");
    char bin_dir[600], self[512];
    snprintf(bin_dir, sizeof bin_dir, "%s/bin", g.dir);
    mkdir(bin_dir, 0755);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    snprintf(g.fc_bin, sizeof g.fc_bin, "%s/firecracker", bin_dir);
    if (symlink(self, g.fc_bin) < 0)
        return -1;
    snprintf(g.log, sizeof g.log, "%s/requests.log", g.dir);
    snprintf(g.contract, sizeof g.contract, "%s/tests/contracts/firecracker-api.yaml",
             VMLET_SOURCE_DIR);
    setenv("FAKE_FC_CONTRACT", g.contract, 1);
    setenv("FAKE_FC_LOG", g.log, 1);
    g.kvm = (kvm_probe_t){.usable = true, .reason = "forced by the test: the fake needs no KVM"};
    print_message("NOTE: Firecracker cannot run here (no working KVM, not packaged); this test "
                  "drives the backend against a FAKE that checks the published API contract\n");
    return 0;
}

static vmm_t *s_vmm(const kvm_probe_t *kvm, vmlet_err_t *err);

static int group_teardown(void **state)
{
    (void)state;
    // A failed test may have left its fake running: stop it.
    vmm_t *vmm = s_vmm(&g.kvm, NULL);
    for (int i = 1; vmm && i <= 2; i++) {
        char state_dir[600];
        snprintf(state_dir, sizeof state_dir, "%s/vm%d", g.dir, i);
        vmm_vm_t *vm = vmm_adopt(vmm, state_dir, NULL);
        if (vm)
            vmm_kill(vm, 5000, NULL);
        vmm_release(&vm);
    }
    vmm_destroy(&vmm);
    ts_remove_dir(g.dir);
    free(g.dir);
    return 0;
}

static vmm_t *s_vmm(const kvm_probe_t *kvm, vmlet_err_t *err)
{
    vmm_settings_t s = {.backend = "firecracker",
                        .firecracker_binary = g.fc_bin,
                        .kvm = kvm,
                        .start_timeout_ms = 10000};
    return vmm_new(&s, err);
}

// The request log as an array (caller deletes), emptied for the next test.
static cJSON *s_take_log(void)
{
    cJSON *all = cJSON_CreateArray();
    FILE *f = fopen(g.log, "r");
    char line[8192];
    while (f && fgets(line, sizeof line, f))
        cJSON_AddItemToArray(all, cJSON_Parse(line));
    if (f)
        fclose(f);
    // Truncated, not removed: fakes still running append to the same file.
    if (truncate(g.log, 0) < 0 && errno != ENOENT)
        fail_msg("truncate %s: %s", g.log, strerror(errno));
    return all;
}

static void s_expect_request(const cJSON *log, int index, const char *method, const char *path,
                             int status, const char *body_json)
{
    const cJSON *req = cJSON_GetArrayItem(log, index);
    if (!req)
        fail_msg("request %d (%s %s) was never sent", index, method, path);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req, "method")), method);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req, "path")), path);
    const char *fault = cJSON_GetStringValue(cJSON_GetObjectItem(req, "fault"));
    if ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(req, "status")) != status)
        fail_msg("%s %s: status %d, want %d (%s)", method, path,
                 (int)cJSON_GetNumberValue(cJSON_GetObjectItem(req, "status")), status,
                 fault ? fault : "");
    if (body_json) {
        cJSON *want = cJSON_Parse(body_json);
        assert_non_null(want);
        if (!cJSON_Compare(cJSON_GetObjectItem(req, "body"), want, true)) {
            char *got = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "body"));
            fail_msg("%s %s: body %s, want %s", method, path, got, body_json);
        }
        cJSON_Delete(want);
    }
}

static void test_selection_needs_kvm_and_1_8(void **state)
{
    (void)state;
    vmlet_err_t err = {0};
    // Here, with the real KVM_RUN probe: refused, and says why.
    vmm_t *vmm = s_vmm(NULL, &err);
    assert_null(vmm);
    print_message("selection here: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "no working KVM"));
    // With KVM (forced), the binary's version decides.
    setenv("FAKE_FC_VERSION", "1.7.2", 1);
    assert_null(s_vmm(&g.kvm, &err));
    assert_non_null(strstr(err.msg, "v1.7.2; vmlet needs >= 1.8"));
    setenv("FAKE_FC_VERSION", "1.8.0", 1);
    vmm = s_vmm(&g.kvm, &err);
    assert_non_null(vmm);
    assert_string_equal(vmm_ops(vmm)->name, "firecracker");
    vmm_destroy(&vmm);
}

static bool s_pid_gone(void *arg)
{
    pid_t pid = *(pid_t *)arg;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    bool zombie = fgets(buf, sizeof buf, f) && strrchr(buf, ')') && strrchr(buf, ')')[2] == 'Z';
    fclose(f);
    return zombie;
}

static void test_start_sequence_matches_contract(void **state)
{
    (void)state;
    vmlet_err_t err = {0};
    vmm_t *vmm = s_vmm(&g.kvm, &err);
    assert_non_null(vmm);
    char state_dir[600];
    snprintf(state_dir, sizeof state_dir, "%s/vm1", g.dir);
    mkdir(state_dir, 0750);
    vmm_disk_t disks[] = {{.path = "/images/base.ext4", .read_only = true, .serial = "base"},
                          {.path = "/pods/p1/rw.raw", .read_only = false}};
    vmm_nic_t nic = {.tap = "vt0a1b2c", .mac = "52:54:00:0a:1b:2c"};
    vmm_spec_t spec = {.id = "5e1d3c2b-aaaa-4bbb-8ccc-0123456789ab",
                       .kernel = "/k/vmlinux",
                       .initrd = "/k/initrd.img",
                       .cmdline = "vmlet.test=1",
                       .vcpus = 2,
                       .mem_mib = 256,
                       .disks = disks,
                       .n_disks = 2,
                       .nic = &nic,
                       .state_dir = state_dir};
    vmm_vm_t *vm = vmm_start(vmm, &spec, &err);
    if (!vm)
        fail_msg("start: %s", err.msg);
    pid_t pid = vmm_vm_pid(vm);

    cJSON *log = s_take_log();
    char want[1024];
    s_expect_request(log, 0, "GET", "/", 200, NULL);
    s_expect_request(log, 1, "PUT", "/machine-config", 204,
                     "{\"vcpu_count\":2,\"mem_size_mib\":256,\"smt\":false}");
    s_expect_request(log, 2, "PUT", "/boot-source", 204,
                     "{\"kernel_image_path\":\"/k/vmlinux\",\"initrd_path\":\"/k/initrd.img\","
                     "\"boot_args\":\"console=ttyS0 reboot=k panic=-1 pci=off quiet i8042.noaux "
                     "i8042.nomux i8042.nopnp i8042.dumbkbd vmlet.test=1\"}");
    s_expect_request(log, 3, "PUT", "/drives/disk0", 204,
                     "{\"drive_id\":\"disk0\",\"path_on_host\":\"/images/base.ext4\","
                     "\"is_root_device\":false,\"is_read_only\":true}");
    s_expect_request(log, 4, "PUT", "/drives/disk1", 204,
                     "{\"drive_id\":\"disk1\",\"path_on_host\":\"/pods/p1/rw.raw\","
                     "\"is_root_device\":false,\"is_read_only\":false}");
    s_expect_request(log, 5, "PUT", "/network-interfaces/eth0", 204,
                     "{\"iface_id\":\"eth0\",\"host_dev_name\":\"vt0a1b2c\","
                     "\"guest_mac\":\"52:54:00:0a:1b:2c\"}");
    snprintf(want, sizeof want, "{\"guest_cid\":3,\"uds_path\":\"%s/agent.sock\"}", state_dir);
    s_expect_request(log, 6, "PUT", "/vsock", 204, want);
    s_expect_request(log, 7, "PUT", "/actions", 204, "{\"action_type\":\"InstanceStart\"}");
    assert_int_equal(cJSON_GetArraySize(log), 8);
    cJSON_Delete(log);

    // Double fork: not our child, not our session; adopt from a new object.
    assert_true(vmm_alive(vm));
    assert_true(kill(pid, 0) == 0);
    assert_int_not_equal(getsid(pid), getsid(0));
    vmm_release(&vm);
    vmm_t *vmm2 = s_vmm(&g.kvm, &err);
    vm = vmm_adopt(vmm2, state_dir, &err);
    if (!vm)
        fail_msg("adopt: %s", err.msg);
    assert_int_equal(vmm_vm_pid(vm), pid);
    assert_true(vmm_rss_bytes(vm) > 0);
    cJSON *adopt_log = s_take_log();
    s_expect_request(adopt_log, 0, "GET", "/", 200, NULL);
    cJSON_Delete(adopt_log);

    // The vsock handshake: the agent's port answers OK, and the guest's
    // first bytes, sent with the OK, are not swallowed by it.
    int fd = vmm_agent_connect(vm, 3000, &err);
    if (fd < 0)
        fail_msg("agent_connect: %s", err.msg);
    char buf[64] = "";
    size_t got = 0;
    int64_t deadline = ts_now_ms() + 3000;
    while (got < strlen(FAKE_GREETING) && ts_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 100);
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n > 0)
            got += (size_t)n;
    }
    assert_string_equal(buf, FAKE_GREETING);
    assert_int_equal(write(fd, "ping\n", 5), 5);
    memset(buf, 0, sizeof buf);
    got = 0;
    deadline = ts_now_ms() + 3000;
    while (got < 5 && ts_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 100);
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n > 0)
            got += (size_t)n;
    }
    assert_string_equal(buf, "ping\n");
    close(fd);
    // A port nobody listens on, and an answer that is not "OK <n>".
    char uds[700];
    snprintf(uds, sizeof uds, "%s/agent.sock", state_dir);
    assert_true(vmm_vsock_connect(uds, 52, 2000, &err) < 0);
    assert_non_null(strstr(err.msg, "nothing listens on port 52"));
    assert_true(vmm_vsock_connect(uds, 7, 2000, &err) < 0);
    assert_non_null(strstr(err.msg, "answered \"NOPE\""));

    // Shutdown is Ctrl+Alt+Del; the (fake) guest powers off and Firecracker exits.
    if (vmm_shutdown(vm, &err) < 0)
        fail_msg("shutdown: %s", err.msg);
    log = s_take_log();
    s_expect_request(log, 0, "PUT", "/actions", 204, "{\"action_type\":\"SendCtrlAltDel\"}");
    cJSON_Delete(log);
    assert_int_equal(vmm_wait_exit(vm, 5000), 0);
    assert_false(vmm_alive(vm));
    assert_int_equal(vmm_remove_files(vm, &err), 0);
    vmm_release(&vm);
    vmm_destroy(&vmm2);
    vmm_destroy(&vmm);
}

static void test_contract_rejects_bad_requests(void **state)
{
    (void)state;
    vmlet_err_t err = {0};
    vmm_t *vmm = s_vmm(&g.kvm, &err);
    assert_non_null(vmm);
    char state_dir[600];
    snprintf(state_dir, sizeof state_dir, "%s/vm2", g.dir);
    mkdir(state_dir, 0750);
    // 64 vCPUs: the contract's maximum is 32, so the fake answers 400 and
    // the backend must fail with the fault_message and stop the process.
    vmm_spec_t spec = {.id = "too-big",
                       .kernel = "/k/vmlinux",
                       .vcpus = 64,
                       .mem_mib = 256,
                       .state_dir = state_dir};
    assert_null(vmm_start(vmm, &spec, &err));
    print_message("start with 64 vCPUs: %s\n", err.msg);
    assert_non_null(
        strstr(err.msg, "PUT /machine-config: 400: body.vcpu_count: 64 is above the maximum 32"));
    char pidfile[700];
    snprintf(pidfile, sizeof pidfile, "%s/vmm.pid", state_dir);
    pid_t pid = -1;
    assert_int_equal(vmm_read_pidfile(pidfile, &pid, &err), 0);
    assert_true(ts_poll(s_pid_gone, &pid, 5000));
    cJSON *log = s_take_log();
    s_expect_request(log, 1, "PUT", "/machine-config", 400, NULL);
    assert_int_equal(cJSON_GetArraySize(log), 2); // nothing after the refusal
    cJSON_Delete(log);

    // The API client on its own, against a fresh fake: what the contract refuses.
    char sock[700];
    snprintf(sock, sizeof sock, "%s/direct.sock", state_dir);
    char *argv[] = {g.fc_bin, "--api-sock", sock, "--id", "direct", NULL};
    char out[700];
    snprintf(out, sizeof out, "%s/direct.log", state_dir);
    pid_t fake = ts_spawn(out, argv);
    assert_true(fake > 0);
    int fd = vmm_unix_connect(sock, 5000, &err);
    assert_true(fd >= 0);
    close(fd);
    fc_api_t *api = fc_api_new(sock, 2000);
    struct {
        const char *method, *path, *body, *fault;
    } cases[] = {
        {"PUT", "/machine-config", "{\"vcpu_count\":1}", "missing required property mem_size_mib"},
        {"PUT", "/machine-config", "{\"vcpu_count\":0,\"mem_size_mib\":128}",
         "0 is below the minimum 1"},
        {"PUT", "/machine-config", "{\"vcpu_count\":\"2\",\"mem_size_mib\":128}",
         "vcpu_count: want an integer"},
        {"PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":128,\"gpus\":1}",
         "body.gpus: unknown property"},
        {"PUT", "/drives/d0", "{\"drive_id\":\"d0\",\"path_on_host\":\"/x\"}",
         "missing required property is_root_device"},
        {"PUT", "/actions", "{\"action_type\":\"Reboot\"}", "is not one of the contract's values"},
        {"PUT", "/actions", "{\"action_type\":\"InstanceStart\"}",
         "Cannot start microvm without kernel configuration."},
        {"PUT", "/balloon", "{\"amount_mib\":1,\"deflate_on_oom\":true}",
         "Invalid request method and/or path: PUT /balloon."},
        {"DELETE", "/vsock", NULL, "Invalid request method and/or path"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *body = cases[i].body ? cJSON_Parse(cases[i].body) : NULL;
        long status = 0;
        int rc = fc_api_call(api, cases[i].method, cases[i].path, body, NULL, &status, &err);
        cJSON_Delete(body);
        if (rc == 0 || status != 400 || !strstr(err.msg, cases[i].fault))
            fail_msg("%s %s %s: rc %d status %ld: \"%s\", want 400 with \"%s\"", cases[i].method,
                     cases[i].path, cases[i].body ? cases[i].body : "", rc, status, err.msg,
                     cases[i].fault);
    }
    // And one the contract accepts, with the same client (kept-alive connection).
    cJSON *ok = cJSON_Parse("{\"vcpu_count\":1,\"mem_size_mib\":128}");
    assert_int_equal(fc_api_put(api, "/machine-config", ok, &err), 0);
    cJSON_Delete(ok);
    fc_api_destroy(&api);
    // A dead socket: the error names it.
    ts_kill(fake, SIGKILL);
    int status;
    ts_wait_exit(fake, 5000, &status);
    api = fc_api_new(sock, 1000);
    assert_true(fc_api_put(api, "/machine-config", NULL, &err) < 0);
    assert_non_null(strstr(err.msg, sock));
    fc_api_destroy(&api);
    cJSON_Delete(s_take_log());
    vmm_destroy(&vmm);
}

int main(int argc, char **argv)
{
    if (strcmp(basename(argv[0]), "firecracker") == 0)
        return fake_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selection_needs_kvm_and_1_8),
        cmocka_unit_test(test_start_sequence_matches_contract),
        cmocka_unit_test(test_contract_rejects_bad_requests),
    };
    if (getenv("VMLET_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMLET_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
