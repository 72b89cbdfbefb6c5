// Pod network arithmetic without I/O: CIDR parsing and validation, usable
// ranges, gateway choice, and the deterministic tap names and MACs.
#include "testsupport.h"

#include "ipam.h"
#include "network.h"

#include <errno.h>
#include <string.h>

static uint32_t addr(const char *s)
{
    uint32_t a = 0;
    vmlet_err_t err = {0};
    assert_int_equal(ipam_addr_parse(s, &a, &err), 0);
    return a;
}

static void assert_addr(uint32_t a, const char *want)
{
    char buf[INET_ADDRSTRLEN];
    ipam_addr_format(a, buf);
    assert_string_equal(buf, want);
}

static void test_parse_and_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *network, *first, *last, *broadcast;
        uint32_t capacity;
    } cases[] = {
        {"10.213.7.0/24", "10.213.7.0", "10.213.7.1", "10.213.7.254", "10.213.7.255", 253},
        {"10.213.0.0/16", "10.213.0.0", "10.213.0.1", "10.213.255.254", "10.213.255.255", 65533},
        {"192.168.4.8/29", "192.168.4.8", "192.168.4.9", "192.168.4.14", "192.168.4.15", 5},
        {"10.0.0.4/30", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", 1},
        {"10.1.128.0/17", "10.1.128.0", "10.1.128.1", "10.1.255.254", "10.1.255.255", 32765},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_cidr_t c;
        vmlet_err_t err = {0};
        assert_int_equal(ipam_cidr_parse(cases[i].text, &c, &err), 0);
        assert_addr(c.network, cases[i].network);
        assert_addr(ipam_first(&c), cases[i].first);
        assert_addr(ipam_last(&c), cases[i].last);
        assert_addr(ipam_broadcast(&c), cases[i].broadcast);
        assert_addr(c.gateway, cases[i].first); // default gateway: first usable
        assert_int_equal(ipam_capacity(&c), cases[i].capacity);
        char back[IPAM_CIDR_STRLEN];
        ipam_cidr_format(&c, back);
        assert_string_equal(back, cases[i].text);
    }
}

static void test_parse_errors_say_why(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *says;
    } cases[] = {
        {"", "empty"},
        {"10.213.0.0", "expected a.b.c.d/len"},
        {"/24", "expected a.b.c.d/len"},
        {"10.213.0/24", "not an IPv4 address"},
        {"10.213.0.256/24", "not an IPv4 address"},
        {"10.213.0.0/", "bad prefix length"},
        {"10.213.0.0/2x", "bad prefix length"},
        {"10.213.0.0/124", "bad prefix length"},
        {"10.213.0.0/-4", "bad prefix length"},
        {"10.213.0.0/8", "/16 to /30"},
        {"10.213.0.0/31", "/16 to /30"},
        {"10.213.0.0/32", "/16 to /30"},
        {"10.213.0.1/24", "did you mean 10.213.0.0/24?"},
        {"10.213.7.77/16", "did you mean 10.213.0.0/16?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ipam_cidr_t c;
        vmlet_err_t err = {0};
        assert_int_equal(ipam_cidr_parse(cases[i].text, &c, &err), -1);
        if (!strstr(err.msg, cases[i].says))
            fail_msg("\"%s\": \"%s\" does not say \"%s\"", cases[i].text, err.msg, cases[i].says);
    }
    vmlet_err_t err = {0};
    ipam_cidr_t c;
    assert_int_equal(ipam_cidr_parse(NULL, &c, &err), -1);
}

static void test_gateway_choice(void **state)
{
    (void)state;
    ipam_cidr_t c;
    vmlet_err_t err = {0};
    assert_int_equal(ipam_cidr_parse("10.213.9.0/24", &c, &err), 0);
    assert_int_equal(ipam_cidr_set_gateway(&c, "10.213.9.254", &err), 0);
    assert_addr(c.gateway, "10.213.9.254");
    assert_false(ipam_assignable(&c, addr("10.213.9.254")));
    assert_true(ipam_assignable(&c, addr("10.213.9.1"))); // first usable is a pod's now
    assert_int_equal(ipam_cidr_set_gateway(&c, "", &err), 0);
    assert_addr(c.gateway, "10.213.9.1");
    assert_int_equal(ipam_cidr_set_gateway(&c, NULL, &err), 0);
    assert_addr(c.gateway, "10.213.9.1");

    static const struct {
        const char *gw, *says;
    } bad[] = {
        {"10.213.10.1", "outside"},
        {"10.213.9.0", "network or broadcast"},
        {"10.213.9.255", "network or broadcast"},
        {"10.213.9", "not an IPv4 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vmlet_err_clear(&err);
        assert_int_equal(ipam_cidr_set_gateway(&c, bad[i].gw, &err), -1);
        if (!strstr(err.msg, bad[i].says))
            fail_msg("gateway %s: \"%s\" does not say \"%s\"", bad[i].gw, err.msg, bad[i].says);
        assert_addr(c.gateway, "10.213.9.1"); // unchanged by a refusal
    }
}

static void test_assignable_excludes_reserved(void **state)
{
    (void)state;
    ipam_cidr_t c;
    vmlet_err_t err = {0};
    assert_int_equal(ipam_cidr_parse("10.213.4.0/29", &c, &err), 0);
    // network .0, gateway .1, pods .2-.6, broadcast .7; neighbours outside.
    static const struct {
        const char *a;
        bool ok;
    } cases[] = {{"10.213.3.255", false}, {"10.213.4.0", false}, {"10.213.4.1", false},
                 {"10.213.4.2", true},    {"10.213.4.6", true},  {"10.213.4.7", false},
                 {"10.213.4.8", false}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (ipam_assignable(&c, addr(cases[i].a)) != cases[i].ok)
            fail_msg("%s: assignable should be %d", cases[i].a, cases[i].ok);
    assert_true(ipam_contains(&c, addr("10.213.4.7")));
    assert_false(ipam_contains(&c, addr("10.213.4.8")));
}

static void test_names(void **state)
{
    (void)state;
    assert_true(ipam_valid_name("6f1c2b1e-8a8d-4c55-9b0e-0c1e2f3a4b5c"));
    assert_true(ipam_valid_name("launcher-1.example_x"));
    assert_false(ipam_valid_name(""));
    assert_false(ipam_valid_name(NULL));
    assert_false(ipam_valid_name("a b"));
    assert_false(ipam_valid_name("a:b"));
    assert_false(ipam_valid_name("a\"b"));
    char longname[130];
    memset(longname, 'a', 129);
    longname[129] = '\0';
    assert_false(ipam_valid_name(longname));
    longname[128] = '\0';
    assert_true(ipam_valid_name(longname));

    assert_true(net_valid_ifname("vmlet-host"));
    assert_true(net_valid_ifname("abcdefghijklmno")); // 15
    assert_false(net_valid_ifname("abcdefghijklmnop"));
    assert_false(net_valid_ifname("a/b"));
    assert_false(net_valid_ifname("vt*"));
    assert_false(net_valid_ifname(".."));
    assert_false(net_valid_ifname(""));
}

static void test_tap_names_are_short_stable_and_distinct(void **state)
{
    (void)state;
    char a[IFNAMSIZ], a2[IFNAMSIZ], b[IFNAMSIZ];
    net_tap_name("6f1c2b1e-8a8d-4c55-9b0e-0c1e2f3a4b5c", a);
    net_tap_name("6f1c2b1e-8a8d-4c55-9b0e-0c1e2f3a4b5c", a2);
    net_tap_name("6f1c2b1e-8a8d-4c55-9b0e-0c1e2f3a4b5d", b);
    assert_string_equal(a, a2);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 14);
    assert_memory_equal(a, NET_TAP_PREFIX, strlen(NET_TAP_PREFIX));
    assert_true(net_valid_ifname(a));
    // 1000 uids, 1000 names.
    static char names[1000][IFNAMSIZ];
    for (int i = 0; i < 1000; i++) {
        char uid[64];
        snprintf(uid, sizeof uid, "pod-%d", i);
        net_tap_name(uid, names[i]);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(names[i], names[j]);
    }
}

static void test_mac_from_address(void **state)
{
    (void)state;
    uint8_t mac[6];
    net_mac_for(addr("10.213.7.42"), mac);
    static const uint8_t want[6] = {0x02, 0x76, 10, 213, 7, 42};
    assert_memory_equal(mac, want, 6);
    assert_int_equal(mac[0] & 0x01, 0); // unicast
    assert_int_equal(mac[0] & 0x02, 2); // locally administered
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_ranges),
        cmocka_unit_test(test_parse_errors_say_why),
        cmocka_unit_test(test_gateway_choice),
        cmocka_unit_test(test_assignable_excludes_reserved),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_tap_names_are_short_stable_and_distinct),
        cmocka_unit_test(test_mac_from_address),
    };
    return TS_RUN(tests);
}
