// Work-protocol frames: every command round trips; bad frames are refused
// with a reason.
#include "testsupport.h"

#include "vmlet/bus_protocol.h"

#include <string.h>

static void test_round_trip_every_command(void **state)
{
    (void)state;
    const uint8_t payload[] = {0, 1, 2, 0xff};
    for (int c = 0; c < VMLET_WORK_COMMANDS; c++) {
        vmlet_work_msg_t out = {.command = (vmlet_work_command_t)c, .number = 7, .held = 2};
        strcpy(out.queue, "vm-launcher");
        strcpy(out.item_id, "launch/uid-1/abc");
        strcpy(out.reason, "worker at capacity");
        out.payload = payload;
        out.payload_len = sizeof payload;
        zmsg_t *msg = vmlet_work_msg_build(&out);
        assert_non_null(msg);
        vmlet_work_msg_t in;
        vmlet_err_t err = {0};
        if (vmlet_work_msg_parse(msg, &in, &err) < 0)
            fail_msg("%s: %s", vmlet_work_command_name(out.command), err.msg);
        assert_int_equal(in.command, c);
        switch (c) {
        case VMLET_WORK_SUBMIT:
            assert_string_equal(in.queue, "vm-launcher");
            assert_string_equal(in.item_id, "launch/uid-1/abc");
            assert_int_equal(in.payload_len, sizeof payload);
            assert_memory_equal(in.payload, payload, sizeof payload);
            break;
        case VMLET_WORK_READY:
            assert_string_equal(in.queue, "vm-launcher");
            assert_int_equal(in.number, 7);
            assert_int_equal(in.held, 2);
            break;
        case VMLET_WORK_WORK:
            assert_int_equal(in.number, 7);
            assert_memory_equal(in.payload, payload, sizeof payload);
            break;
        case VMLET_WORK_NACK:
        case VMLET_WORK_REJECTED:
            assert_string_equal(in.reason, "worker at capacity");
            break;
        }
        zmsg_destroy(&msg);
    }
}

static zmsg_t *s_msg(int n, const char *const frames[])
{
    zmsg_t *msg = zmsg_new();
    for (int i = 0; i < n; i++)
        zmsg_addstr(msg, frames[i]);
    return msg;
}

static void test_bad_messages_are_refused(void **state)
{
    (void)state;
    static const struct {
        int n;
        const char *frames[6];
        const char *want;
    } cases[] = {
        {2, {"VMLW0", "DONE"}, "not a VMLW1 message"},
        {2, {"VMLW1", "DANCE"}, "unknown VMLW1 command"},
        {1, {"VMLW1"}, "unknown VMLW1 command"},
        {2, {"VMLW1", "DONE"}, "DONE: missing frame 1"},
        {4, {"VMLW1", "DONE", "id", "extra"}, "unexpected extra frames"},
        {5, {"VMLW1", "READY", "q", "-1", "0"}, "not a non-negative integer"},
        {5, {"VMLW1", "READY", "q", "12x", "0"}, "not a non-negative integer"},
        {3, {"VMLW1", "DONE", ""}, "item id frame of 0 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zmsg_t *msg = s_msg(cases[i].n, cases[i].frames);
        vmlet_work_msg_t in;
        vmlet_err_t err = {0};
        assert_int_equal(vmlet_work_msg_parse(msg, &in, &err), -1);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        zmsg_destroy(&msg);
    }
}

static void test_oversized_and_nul_frames(void **state)
{
    (void)state;
    char big[VMLET_WORK_ID_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *frames[] = {"VMLW1", "DONE", big};
    zmsg_t *msg = s_msg(3, frames);
    vmlet_work_msg_t in;
    vmlet_err_t err = {0};
    assert_int_equal(vmlet_work_msg_parse(msg, &in, &err), -1);
    assert_non_null(strstr(err.msg, "item id frame"));
    zmsg_destroy(&msg);

    msg = zmsg_new();
    zmsg_addstr(msg, "VMLW1");
    zmsg_addstr(msg, "DONE");
    zmsg_addmem(msg, "a\0b", 3);
    assert_int_equal(vmlet_work_msg_parse(msg, &in, &err), -1);
    assert_non_null(strstr(err.msg, "NUL"));
    zmsg_destroy(&msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_command),
        cmocka_unit_test(test_bad_messages_are_refused),
        cmocka_unit_test(test_oversized_and_nul_frames),
    };
    return TS_RUN(tests);
}
