// The host end of the guest agent's protocol over a socketpair: framing
// (partial frames, many per read), the read budget, dedupe of resends,
// hunting for the first Hello, protocol errors, seq/ack and the outbox bound.
#include "testsupport.h"

#include "agent_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int guest;                   // the agent's end, written raw by the test
    vmlet_agent_channel_t *host; // the channel under test
} pair_t;

static int setup(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pair_t *p = calloc(1, sizeof *p);
    p->guest = sv[0];
    p->host = vmlet_agent_channel_new(sv[1], 0);
    assert_non_null(p->host);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pair_t *p = *state;
    vmlet_agent_channel_destroy(&p->host);
    vmlet_agent_channel_destroy(&p->host); // safe twice
    if (p->guest >= 0)
        close(p->guest);
    free(p);
    return 0;
}

// Packs msg as a frame into buf (which must be big enough); returns its length.
static size_t s_frame(uint8_t *buf, const Vmlet__GuestMessage *msg)
{
    size_t n = vmlet__guest_message__get_packed_size(msg);
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    vmlet__guest_message__pack(msg, buf + 4);
    return 4 + n;
}

static size_t s_hello(uint8_t *buf, uint64_t seq, uint64_t ack)
{
    Vmlet__AgentHello hello = VMLET__AGENT_HELLO__INIT;
    hello.version = "test";
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.has_seq = 1;
    msg.seq = seq;
    msg.has_ack = ack > 0;
    msg.ack = ack;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_HELLO;
    msg.hello = &hello;
    return s_frame(buf, &msg);
}

static size_t s_output(uint8_t *buf, uint64_t seq, const void *data, size_t len)
{
    Vmlet__OutputChunk out = VMLET__OUTPUT_CHUNK__INIT;
    out.container = "app";
    out.has_data = 1;
    out.data.data = (uint8_t *)data;
    out.data.len = len;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.has_seq = 1;
    msg.seq = seq;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_OUTPUT;
    msg.output = &out;
    return s_frame(buf, &msg);
}

static void s_write(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

// Reads everything and returns the seqs of the queued messages, in order.
static size_t s_drain(vmlet_agent_channel_t *ch, uint64_t *seqs, size_t max)
{
    size_t n = 0;
    Vmlet__GuestMessage *msg;
    while ((msg = vmlet_agent_channel_next(ch))) {
        if (n < max)
            seqs[n] = msg->seq;
        n++;
        vmlet__guest_message__free_unpacked(msg, NULL);
    }
    return n;
}

static void test_partial_frames(void **state)
{
    pair_t *p = *state;
    uint8_t buf[256];
    size_t len = s_hello(buf, 1, 0);
    len += s_output(buf + len, 2, "hi", 2);
    vmlet_err_t err = {0};
    for (size_t i = 0; i < len; i++) {
        s_write(p->guest, buf + i, 1);
        int n = vmlet_agent_channel_read(p->host, 0, &err);
        assert_true(n >= 0);
        if (i + 1 < len)
            assert_false(vmlet_agent_channel_hello_seen(p->host) && n == 2);
    }
    Vmlet__GuestMessage *msg = vmlet_agent_channel_next(p->host);
    assert_non_null(msg);
    assert_int_equal(msg->body_case, VMLET__GUEST_MESSAGE__BODY_HELLO);
    vmlet__guest_message__free_unpacked(msg, NULL);
    msg = vmlet_agent_channel_next(p->host);
    assert_non_null(msg);
    assert_int_equal(msg->body_case, VMLET__GUEST_MESSAGE__BODY_OUTPUT);
    assert_memory_equal(msg->output->data.data, "hi", 2);
    vmlet__guest_message__free_unpacked(msg, NULL);
    assert_null(vmlet_agent_channel_next(p->host));
}

static void test_many_frames_per_read(void **state)
{
    pair_t *p = *state;
    static uint8_t buf[64 << 10];
    size_t len = s_hello(buf, 1, 0);
    for (uint64_t seq = 2; seq <= 301; seq++)
        len += s_output(buf + len, seq, "line\n", 5);
    s_write(p->guest, buf, len);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), 301);
    vmlet_agent_channel_stats_t stats;
    vmlet_agent_channel_stats(p->host, &stats);
    assert_int_equal(stats.frames_in, 301);
    assert_int_equal(stats.bytes_in, len);
    uint64_t seqs[301];
    assert_int_equal(s_drain(p->host, seqs, 301), 301);
    for (size_t i = 0; i < 301; i++)
        assert_int_equal(seqs[i], i + 1);
    assert_int_equal(vmlet_agent_channel_last_seen(p->host), 301);
}

// One call takes at most its budget, so a flooding guest yields the loop.
static void test_read_budget(void **state)
{
    pair_t *p = *state;
    int big = 1 << 20;
    setsockopt(p->guest, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    static uint8_t buf[600 << 10];
    static uint8_t data[4000];
    memset(data, 'x', sizeof data);
    size_t len = s_hello(buf, 1, 0);
    uint64_t seq = 2;
    while (len + sizeof data + 64 < sizeof buf)
        len += s_output(buf + len, seq++, data, sizeof data);
    fcntl(p->guest, F_SETFL, O_NONBLOCK);
    size_t written = 0;
    vmlet_err_t err = {0};
    int calls = 0;
    uint64_t before = 0;
    size_t got = 0;
    while (got < seq - 1) {
        if (written < len) {
            ssize_t n = write(p->guest, buf + written, len - written);
            if (n > 0)
                written += (size_t)n;
        }
        assert_true(vmlet_agent_channel_read(p->host, 16 << 10, &err) >= 0);
        vmlet_agent_channel_stats_t stats;
        vmlet_agent_channel_stats(p->host, &stats);
        assert_true(stats.bytes_in - before <= 16 << 10);
        before = stats.bytes_in;
        got += s_drain(p->host, NULL, 0);
        calls++;
        assert_true(calls < 10000);
    }
    assert_true(calls >= (int)(len / (16 << 10)));
}

// Resends (seq at or below the mark) are dropped; a Hello does not raise
// the mark, so what follows a reconnect's Hello is taken.
static void test_dedupe_of_resends(void **state)
{
    pair_t *p = *state;
    uint8_t buf[1024];
    size_t len = s_hello(buf, 1, 0);
    len += s_output(buf + len, 2, "a", 1);
    len += s_output(buf + len, 3, "b", 1);
    len += s_output(buf + len, 2, "a", 1);
    len += s_output(buf + len, 3, "b", 1);
    len += s_output(buf + len, 4, "c", 1);
    s_write(p->guest, buf, len);
    vmlet_err_t err = {0};
    assert_true(vmlet_agent_channel_read(p->host, 0, &err) >= 0);
    uint64_t seqs[8];
    assert_int_equal(s_drain(p->host, seqs, 8), 4);
    assert_int_equal(seqs[1], 2);
    assert_int_equal(seqs[2], 3);
    assert_int_equal(seqs[3], 4);

    // A reconnect: a new channel carrying the mark, the agent's Hello with a
    // newer seq, then its resends 3 (seen) and 4, 5 (4 seen, 5 not).
    uint64_t mark = vmlet_agent_channel_last_seen(p->host);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    vmlet_agent_channel_t *again = vmlet_agent_channel_new(sv[1], 0);
    vmlet_agent_channel_set_last_seen(again, mark);
    len = s_hello(buf, 9, 0);
    len += s_output(buf + len, 3, "b", 1);
    len += s_output(buf + len, 4, "c", 1);
    len += s_output(buf + len, 5, "d", 1);
    len += s_output(buf + len, 10, "e", 1);
    s_write(sv[0], buf, len);
    assert_true(vmlet_agent_channel_read(again, 0, &err) >= 0);
    assert_int_equal(s_drain(again, seqs, 8), 3);
    assert_int_equal(seqs[0], 9);
    assert_int_equal(seqs[1], 5);
    assert_int_equal(seqs[2], 10);
    vmlet_agent_channel_stats_t stats;
    vmlet_agent_channel_stats(again, &stats);
    assert_int_equal(stats.resends_dropped, 2);
    vmlet_agent_channel_destroy(&again);
    close(sv[0]);
}

static void s_expect_proto_error(pair_t *p, const void *bytes, size_t len, const char *words)
{
    uint8_t buf[256];
    size_t hl = s_hello(buf, 1, 0);
    s_write(p->guest, buf, hl);
    s_write(p->guest, bytes, len);
    vmlet_err_t err = {0};
    // A socketpair delivers both writes at once: one read sees them.
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), -1);
    assert_int_equal(err.code, EPROTO);
    if (!strstr(err.msg, words))
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, words);
    // The Hello before the bad frame was still delivered.
    Vmlet__GuestMessage *msg = vmlet_agent_channel_next(p->host);
    assert_non_null(msg);
    assert_int_equal(msg->body_case, VMLET__GUEST_MESSAGE__BODY_HELLO);
    vmlet__guest_message__free_unpacked(msg, NULL);
}

static void test_oversized_frame_rejected(void **state)
{
    uint8_t frame[4] = {0x00, 0x40, 0x00, 0x01}; // 4 MiB + 1
    s_expect_proto_error(*state, frame, sizeof frame, "over the 4194304-byte limit");
}

static void test_absurd_length_rejected(void **state)
{
    uint8_t frame[4] = {0xff, 0xff, 0xff, 0xf0};
    s_expect_proto_error(*state, frame, sizeof frame, "over the");
}

static void test_empty_frame_rejected(void **state)
{
    uint8_t frame[4] = {0, 0, 0, 0};
    s_expect_proto_error(*state, frame, sizeof frame, "empty frame");
}

static void test_garbage_rejected(void **state)
{
    // Field 1 as a length-delimited field running past the end.
    uint8_t frame[4 + 6] = {0, 0, 0, 6, 0x0a, 0x7f, 0xff, 0xff, 0xff, 0xff};
    s_expect_proto_error(*state, frame, sizeof frame, "does not unpack");
}

static void test_missing_seq_rejected(void **state)
{
    Vmlet__Pong pong = VMLET__PONG__INIT;
    Vmlet__GuestMessage msg = VMLET__GUEST_MESSAGE__INIT;
    msg.body_case = VMLET__GUEST_MESSAGE__BODY_PONG;
    msg.pong = &pong;
    uint8_t buf[64];
    size_t len = s_frame(buf, &msg);
    s_expect_proto_error(*state, buf, len, "without a seq");
}

// A new connection may start with the tail of a frame meant for the last
// host: skipped up to the first Hello, after which framing is strict.
static void test_hunts_for_first_hello(void **state)
{
    pair_t *p = *state;
    uint8_t buf[1024];
    size_t len = s_output(buf, 7, "stale tail", 10);
    size_t cut = 6; // start mid-frame
    len += s_hello(buf + len, 12, 0);
    len += s_output(buf + len, 8, "resend", 6);
    s_write(p->guest, buf + cut, len - cut);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), 2);
    uint64_t seqs[4];
    assert_int_equal(s_drain(p->host, seqs, 4), 2);
    assert_int_equal(seqs[0], 12);
    assert_int_equal(seqs[1], 8);
    vmlet_agent_channel_stats_t stats;
    vmlet_agent_channel_stats(p->host, &stats);
    assert_true(stats.bytes_skipped > 0);
}

static void test_no_hello_is_an_error(void **state)
{
    pair_t *p = *state;
    static uint8_t junk[64 << 10];
    memset(junk, 0xff, sizeof junk);
    fcntl(p->guest, F_SETFL, O_NONBLOCK);
    vmlet_err_t err = {0};
    for (int i = 0; i < 100; i++) {
        ssize_t n = write(p->guest, junk, sizeof junk);
        (void)n;
        if (vmlet_agent_channel_read(p->host, 0, &err) < 0)
            break;
    }
    assert_int_equal(err.code, EPROTO);
    assert_non_null(strstr(err.msg, "no AgentHello"));
}

static void test_eof_is_connreset(void **state)
{
    pair_t *p = *state;
    close(p->guest);
    p->guest = -1;
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), -1);
    assert_int_equal(err.code, ECONNRESET);
}

// Reads n bytes from fd, flushing ch (when given) whenever fd has nothing,
// as the launcher's loop would on POLLOUT.
static void s_read_full(int fd, void *buf, size_t n, vmlet_agent_channel_t *ch)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (uint8_t *)buf + got, n - got, ch ? MSG_DONTWAIT : 0);
        if (r < 0 && errno == EAGAIN) {
            vmlet_err_t err = {0};
            assert_true(vmlet_agent_channel_flush(ch, &err) >= 0);
            continue;
        }
        assert_true(r > 0);
        got += (size_t)r;
    }
}

static Vmlet__GuestMessage *s_read_frame_from(int fd, vmlet_agent_channel_t *ch)
{
    uint8_t head[4];
    s_read_full(fd, head, 4, ch);
    uint32_t n =
        (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
    uint8_t *body = malloc(n ? n : 1);
    s_read_full(fd, body, n, ch);
    Vmlet__GuestMessage *msg = vmlet__guest_message__unpack(NULL, n, body);
    free(body);
    assert_non_null(msg);
    return msg;
}

static Vmlet__GuestMessage *s_read_frame(int fd)
{
    return s_read_frame_from(fd, NULL);
}

// Host messages are numbered above the Hello's ack and carry the mark as ack.
static void test_seq_and_ack(void **state)
{
    pair_t *p = *state;
    Vmlet__Ping ping = VMLET__PING__INIT;
    Vmlet__GuestMessage out = VMLET__GUEST_MESSAGE__INIT;
    out.body_case = VMLET__GUEST_MESSAGE__BODY_PING;
    out.ping = &ping;
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_send(p->host, &out, &err), -1);
    assert_int_equal(err.code, EAGAIN);

    uint8_t buf[256];
    size_t len = s_hello(buf, 5, 41); // the agent has seen host seq 41
    len += s_output(buf + len, 6, "x", 1);
    s_write(p->guest, buf, len);
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), 2);
    s_drain(p->host, NULL, 0);
    assert_true(vmlet_agent_channel_ack_pending(p->host));
    assert_int_equal(vmlet_agent_channel_send(p->host, &out, &err), 0);
    assert_int_equal(vmlet_agent_channel_send(p->host, &out, &err), 0);
    assert_false(vmlet_agent_channel_ack_pending(p->host));
    Vmlet__GuestMessage *got = s_read_frame(p->guest);
    assert_int_equal(got->seq, 42);
    assert_int_equal(got->ack, 6);
    assert_int_equal(got->body_case, VMLET__GUEST_MESSAGE__BODY_PING);
    vmlet__guest_message__free_unpacked(got, NULL);
    got = s_read_frame(p->guest);
    assert_int_equal(got->seq, 43);
    vmlet__guest_message__free_unpacked(got, NULL);

    len = s_output(buf, 7, "y", 1);
    s_write(p->guest, buf, len);
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), 1);
    s_drain(p->host, NULL, 0);
    assert_true(vmlet_agent_channel_ack_pending(p->host));
    assert_int_equal(vmlet_agent_channel_send_ack(p->host, &err), 0);
    assert_false(vmlet_agent_channel_ack_pending(p->host));
    got = s_read_frame(p->guest);
    assert_false(got->has_seq);
    assert_int_equal(got->ack, 7);
    assert_int_equal(got->body_case, VMLET__GUEST_MESSAGE__BODY__NOT_SET);
    vmlet__guest_message__free_unpacked(got, NULL);
}

// A guest that does not read: the outbox stops at its bound, refuses
// cleanly, and drains once the guest reads.
static void test_outbox_bound(void **state)
{
    pair_t *p = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    vmlet_agent_channel_t *ch = vmlet_agent_channel_new(sv[1], 64 << 10);
    uint8_t buf[256];
    size_t len = s_hello(buf, 1, 0);
    s_write(sv[0], buf, len);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_read(ch, 0, &err), 1);
    s_drain(ch, NULL, 0);

    static uint8_t data[8000];
    memset(data, 'z', sizeof data);
    Vmlet__StreamData sd = VMLET__STREAM_DATA__INIT;
    sd.has_stream_id = 1;
    sd.stream_id = 1;
    sd.has_data = 1;
    sd.data.data = data;
    sd.data.len = sizeof data;
    Vmlet__GuestMessage out = VMLET__GUEST_MESSAGE__INIT;
    out.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    out.stream_data = &sd;
    int sent = 0;
    while (vmlet_agent_channel_send(ch, &out, &err) == 0)
        sent++;
    assert_int_equal(err.code, ENOBUFS);
    assert_true(vmlet_agent_channel_pending(ch) <= 64 << 10);
    assert_true(vmlet_agent_channel_pending(ch) > (64 << 10) - 8100);
    assert_true(sent > 0);

    // The guest reads everything: frames arrive whole and in order.
    for (int i = 0; i < sent; i++) {
        Vmlet__GuestMessage *got = s_read_frame_from(sv[0], ch);
        assert_int_equal(got->seq, (uint64_t)i + 1);
        assert_int_equal(got->stream_data->data.len, sizeof data);
        vmlet__guest_message__free_unpacked(got, NULL);
    }
    assert_int_equal(vmlet_agent_channel_flush(ch, &err), 0);
    assert_int_equal(vmlet_agent_channel_send(ch, &out, &err), 0);
    vmlet_agent_channel_destroy(&ch);
    close(sv[0]);
    (void)p;
}

static void test_too_big_to_send(void **state)
{
    pair_t *p = *state;
    uint8_t buf[256];
    size_t len = s_hello(buf, 1, 0);
    s_write(p->guest, buf, len);
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_agent_channel_read(p->host, 0, &err), 1);
    s_drain(p->host, NULL, 0);
    size_t n = VMLET_AGENT_FRAME_MAX + 1;
    uint8_t *data = calloc(1, n);
    Vmlet__StreamData sd = VMLET__STREAM_DATA__INIT;
    sd.has_data = 1;
    sd.data.data = data;
    sd.data.len = n;
    Vmlet__GuestMessage out = VMLET__GUEST_MESSAGE__INIT;
    out.body_case = VMLET__GUEST_MESSAGE__BODY_STREAM_DATA;
    out.stream_data = &sd;
    assert_int_equal(vmlet_agent_channel_send(p->host, &out, &err), -1);
    assert_int_equal(err.code, EMSGSIZE);
    assert_int_equal(vmlet_agent_channel_pending(p->host), 0);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_partial_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_frames_per_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_of_resends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_frame_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absurd_length_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_frame_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_seq_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hunts_for_first_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hello_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_is_connreset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_and_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big_to_send, setup, teardown),
    };
    return TS_RUN(tests);
}
