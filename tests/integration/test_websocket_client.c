// Cross-check of the WebSocket codec against an independent client:
// Debian's python3-websocket (websocket-client) speaks to a loopback TCP
// server in this process that uses only vmlet_websocket for the protocol.
// The client sends stdin on channel 0, a ping, and "exit 3\n"; the server
// echoes stdin on channel 1, then writes the exit Status on channel 3 and
// closes with 1000.
#include "testsupport.h"

#include "ws_channel.h"
#include "ws_conn.h"
#include "ws_handshake.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static const char s_client_py[] =
    "import base64, json, sys, websocket\n"
    "port, proto = sys.argv[1], sys.argv[2]\n"
    "b64 = 'base64' in proto\n"
    "ws = websocket.create_connection('ws://127.0.0.1:%s/exec' % port,\n"
    "    subprotocols=[proto], timeout=10)\n"
    "assert ws.getsubprotocol() == proto, ws.getsubprotocol()\n"
    "def send(ch, data):\n"
    "    if b64: ws.send(chr(48 + ch) + base64.b64encode(data).decode())\n"
    "    else: ws.send_binary(bytes([ch]) + data)\n"
    "payload = bytes(range(256)) * 400 + b'\\xff\\x00 end\\n'\n"
    "send(0, payload)\n"
    "ws.ping('are you there')\n"
    "send(0, b'exit 3\\n')\n"
    "got = {}\n"
    "while True:\n"
    "    op, data = ws.recv_data()\n"
    "    if op == websocket.ABNF.OPCODE_CLOSE:\n"
    "        code = int.from_bytes(data[:2], 'big')\n"
    "        break\n"
    "    assert op == (websocket.ABNF.OPCODE_TEXT if b64 else websocket.ABNF.OPCODE_BINARY), op\n"
    "    if b64: data = data.encode() if isinstance(data, str) else data\n"
    "    ch = data[0] - 48 if b64 else data[0]\n"
    "    body = base64.b64decode(data[1:], validate=True) if b64 else data[1:]\n"
    "    got[ch] = got.get(ch, b'') + body\n"
    "assert code == 1000, code\n"
    "assert got.get(1) == payload + b'exit 3\\n', 'stdout echo differs'\n"
    "err = got.get(3, b'').decode()\n"
    "if proto.startswith('v4.'):\n"
    "    st = json.loads(err)\n"
    "    assert st['status'] == 'Failure' and st['reason'] == 'NonZeroExitCode', st\n"
    "    assert st['details']['causes'] == [{'reason': 'ExitCode', 'message': '3'}], st\n"
    "else:\n"
    "    assert err.endswith('exit status 3'), err\n"
    "print('ok', proto, len(got[1]), err)\n";

typedef struct {
    vmlet_ws_conn_t *conn;
    bool exit_seen;
    int closed_code;
} server_t;

static int s_on_data(void *arg, uint8_t ch, const uint8_t *p, size_t n)
{
    server_t *s = arg;
    if (ch != VMLET_WS_STDIN)
        return -1;
    vmlet_err_t err = {0};
    if (vmlet_ws_conn_send(s->conn, VMLET_WS_STDOUT, p, n, &err) < 0)
        fail_msg("%s", err.msg);
    if (n == 7 && memcmp(p, "exit 3\n", 7) == 0)
        s->exit_seen = true;
    return 0;
}

static void s_on_closed(void *arg, int code, const char *reason)
{
    (void)reason;
    ((server_t *)arg)->closed_code = code;
}

// A header's value from a raw request head, or NULL; malloc'd.
static char *s_header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            h += n + 1;
            while (*h == ' ')
                h++;
            const char *end = strstr(h, "\r\n");
            return strndup(h, (size_t)(end - h));
        }
    }
    return NULL;
}

static void s_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            poll(&pfd, 1, 1000);
            continue;
        }
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

static void s_run(const char *proto_name)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1), 0);
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    char *dir = ts_tempdir("ws-client");
    char log[512];
    snprintf(log, sizeof log, "%s/client.log", dir);
    char *argv[] = {PYTHON, "-c", (char *)s_client_py, port, (char *)proto_name, NULL};
    pid_t pid = ts_spawn(log, argv);

    struct pollfd pfd = {lfd, POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    close(lfd);
    fcntl(fd, F_SETFL, O_NONBLOCK);

    // The request head, then the handshake as the service would run it.
    char head[4096];
    size_t hn = 0;
    int64_t deadline = ts_now_ms() + 10000;
    while (!memmem(head, hn, "\r\n\r\n", 4)) {
        assert_true(ts_now_ms() < deadline);
        struct pollfd rp = {fd, POLLIN, 0};
        poll(&rp, 1, 1000);
        ssize_t r = read(fd, head + hn, sizeof head - 1 - hn);
        if (r > 0)
            hn += (size_t)r;
        assert_true(r != 0 && hn < sizeof head - 1);
    }
    head[hn] = '\0';
    char *up = s_header(head, "Upgrade"), *co = s_header(head, "Connection");
    char *key = s_header(head, "Sec-WebSocket-Key"), *ver = s_header(head, "Sec-WebSocket-Version");
    char *pr = s_header(head, "Sec-WebSocket-Protocol");
    vmlet_ws_request_t req = {"GET", up, co, key, ver, pr};
    vmlet_ws_handshake_t hs = {0};
    vmlet_err_t err = {0};
    if (vmlet_ws_handshake(&req, &hs, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(hs.proto->name, proto_name);
    s_write_all(fd, hs.response, strlen(hs.response));
    // Whatever followed the head is WebSocket already.
    size_t extra = hn - (size_t)((char *)memmem(head, hn, "\r\n\r\n", 4) + 4 - head);

    server_t srv = {0};
    vmlet_ws_callbacks_t cb = {s_on_data, NULL, NULL, s_on_closed};
    srv.conn = vmlet_ws_conn_new(hs.proto, 0, &cb, &srv);
    // Kubernetes' "session is up" empty message on stdout.
    assert_int_equal(vmlet_ws_conn_send(srv.conn, VMLET_WS_STDOUT, NULL, 0, &err), 0);
    vmlet_ws_conn_feed(srv.conn, head + hn - extra, extra);

    uint8_t buf[65536];
    bool status_sent = false;
    while (vmlet_ws_conn_state(srv.conn) != VMLET_WS_CLOSED) {
        assert_true(ts_now_ms() < deadline);
        size_t pn;
        const uint8_t *out = vmlet_ws_conn_pending(srv.conn, &pn);
        struct pollfd rp = {fd, POLLIN | (pn ? POLLOUT : 0), 0};
        poll(&rp, 1, 200);
        if (pn && (rp.revents & POLLOUT)) {
            ssize_t w = write(fd, out, pn);
            if (w > 0)
                vmlet_ws_conn_written(srv.conn, (size_t)w);
        }
        if (rp.revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r == 0)
                break;
            if (r > 0)
                assert_int_equal(vmlet_ws_conn_feed(srv.conn, buf, (size_t)r), (size_t)r);
        }
        // After the client's last stdin message: the exit status, then
        // the closing handshake, as the service ends an exec.
        if (srv.exit_seen && !status_sent) {
            size_t len;
            char *st = vmlet_ws_status_exit(hs.proto, 3, &len);
            assert_int_equal(vmlet_ws_conn_send(srv.conn, VMLET_WS_ERROR, st, len, &err), 0);
            assert_int_equal(vmlet_ws_conn_send_close(srv.conn, 1000, "", &err), 0);
            free(st);
            status_sent = true;
        }
    }
    size_t pn;
    const uint8_t *out = vmlet_ws_conn_pending(srv.conn, &pn);
    s_write_all(fd, out, pn);
    close(fd);

    int status = -1;
    assert_int_equal(ts_wait_exit(pid, 10000, &status), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cat %s", log);
    if (system(cmd) != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s client failed (status 0x%x); its log is above", proto_name, status);
    assert_int_equal(srv.closed_code, 1000);
    vmlet_ws_conn_destroy(&srv.conn);
    free(hs.response);
    free(up), free(co), free(key), free(ver), free(pr);
    ts_remove_dir(dir);
    free(dir);
}

static void test_v4_binary(void **state)
{
    (void)state;
    s_run("v4.channel.k8s.io");
}

static void test_v1_base64(void **state)
{
    (void)state;
    s_run("base64.channel.k8s.io");
}

static void test_v4_base64(void **state)
{
    (void)state;
    s_run("v4.base64.channel.k8s.io");
}

int main(void)
{
    if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import websocket' 2>/dev/null") != 0) {
        printf("SKIP: %s with python3-websocket is missing (apt-get install python3-websocket)\n",
               PYTHON);
        return 77; // CTest's SKIP_RETURN_CODE for this test
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_binary),
        cmocka_unit_test(test_v1_base64),
        cmocka_unit_test(test_v4_base64),
    };
    return TS_RUN(tests);
}
