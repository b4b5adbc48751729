/* test_addr_policy.c - server/addr_policy: the class of an address (IPv4,
 * IPv6, and IPv6 forms that carry an IPv4 address), numeric hosts parsed as
 * a resolver reads them, allowed networks parsed with the byte where they go
 * wrong, and what the import policy lets through. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/addr_policy.h"

static struct sockaddr_storage addr(const char *text) {
    struct sockaddr_storage ss;
    cr_assert(addr_parse(text, &ss), "'%s' did not parse", text);
    return ss;
}

static AddrClass class_of(const char *text) {
    struct sockaddr_storage ss = addr(text);
    return addr_classify((struct sockaddr *)&ss);
}

typedef struct {
    const char *a;
    AddrClass c;
} ClassCase;

static void expect_classes(const ClassCase *cases, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(class_of(cases[i].a), cases[i].c, "%s: class %d, want %d", cases[i].a,
                     class_of(cases[i].a), cases[i].c);
}

Test(addr_policy, classifies_ipv4) {
    const ClassCase cases[] = {
        {"127.0.0.1", ADDR_LOOPBACK},     {"127.255.0.9", ADDR_LOOPBACK},
        {"10.0.0.1", ADDR_PRIVATE},       {"10.255.255.255", ADDR_PRIVATE},
        {"172.16.0.1", ADDR_PRIVATE},     {"172.31.255.254", ADDR_PRIVATE},
        {"172.15.255.255", ADDR_PUBLIC},  {"172.32.0.0", ADDR_PUBLIC},
        {"192.168.1.1", ADDR_PRIVATE},    {"192.169.0.1", ADDR_PUBLIC},
        {"100.64.0.1", ADDR_PRIVATE},     {"100.127.255.255", ADDR_PRIVATE},
        {"100.128.0.0", ADDR_PUBLIC},     {"169.254.169.254", ADDR_LINK_LOCAL},
        {"0.0.0.0", ADDR_UNSPECIFIED},    {"0.1.2.3", ADDR_UNSPECIFIED},
        {"224.0.0.1", ADDR_MULTICAST},    {"239.255.255.250", ADDR_MULTICAST},
        {"240.0.0.1", ADDR_RESERVED},     {"255.255.255.255", ADDR_RESERVED},
        {"192.0.2.7", ADDR_RESERVED},     {"198.18.0.1", ADDR_RESERVED},
        {"8.8.8.8", ADDR_PUBLIC},         {"1.1.1.1", ADDR_PUBLIC},
        {"151.101.1.69", ADDR_PUBLIC},    {"11.0.0.1", ADDR_PUBLIC},
    };
    expect_classes(cases, sizeof cases / sizeof *cases);
}

Test(addr_policy, classifies_ipv6_and_the_ipv4_it_carries) {
    const ClassCase cases[] = {
        {"::", ADDR_UNSPECIFIED},           {"::1", ADDR_LOOPBACK},
        {"[::1]", ADDR_LOOPBACK},           {"fc00::1", ADDR_PRIVATE},
        {"fd12:3456::1", ADDR_PRIVATE},     {"fec0::1", ADDR_PRIVATE},
        {"fe80::1", ADDR_LINK_LOCAL},       {"febf::1", ADDR_LINK_LOCAL},
        {"ff02::1", ADDR_MULTICAST},        {"2001:db8::1", ADDR_RESERVED},
        {"100::1", ADDR_RESERVED},          {"2606:4700::1111", ADDR_PUBLIC},
        {"2a00:1450:4001::200e", ADDR_PUBLIC},
        /* IPv4-mapped, -compatible, NAT64, 6to4: judged by the IPv4 inside */
        {"::ffff:127.0.0.1", ADDR_LOOPBACK}, {"::ffff:10.1.2.3", ADDR_PRIVATE},
        {"::ffff:169.254.169.254", ADDR_LINK_LOCAL}, {"::ffff:8.8.8.8", ADDR_PUBLIC},
        {"::127.0.0.1", ADDR_LOOPBACK},     {"64:ff9b::a9fe:a9fe", ADDR_LINK_LOCAL},
        {"64:ff9b::808:808", ADDR_PUBLIC},  {"2002:7f00:1::", ADDR_LOOPBACK},
        {"64:ff9b:1::a9fe:a9fe", ADDR_PRIVATE},  {"64:ff9b:1::808:808", ADDR_PRIVATE},
        {"64:ff9b:1:7f00:0:1:808:808", ADDR_PRIVATE}, /* 127.0.0.1 at a /48's place */
        {"2002:c0a8:101::1", ADDR_PRIVATE}, {"2002:808:808::", ADDR_PUBLIC},
    };
    expect_classes(cases, sizeof cases / sizeof *cases);
}

Test(addr_policy, parses_numeric_hosts_as_a_resolver_does_and_names_not) {
    const struct {
        const char *host, *shown;
    } numeric[] = {
        {"127.0.0.1", "127.0.0.1"}, {"127.1", "127.0.0.1"},       {"2130706433", "127.0.0.1"},
        {"0x7f.0.0.1", "127.0.0.1"}, {"[::1]", "::1"},            {"::ffff:10.0.0.1", "::ffff:10.0.0.1"},
        {"[fe80::1]", "fe80::1"},   {"169.254.169.254", "169.254.169.254"},
    };
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
        struct sockaddr_storage ss = addr(numeric[i].host);
        char text[64];
        addr_format((struct sockaddr *)&ss, text, sizeof text);
        cr_expect_str_eq(text, numeric[i].shown, "%s", numeric[i].host);
    }
    const char *names[] = {"localhost", "example.com", "", "[]", "[127.0.0.1", "1.2.3.4.5",
                           "metadata.google.internal"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct sockaddr_storage ss;
        cr_expect_not(addr_parse(names[i], &ss), "'%s' parsed as an address", names[i]);
    }
}

Test(addr_policy, names_each_class) {
    cr_expect_str_eq(addr_class_name(ADDR_LOOPBACK), "a loopback address");
    cr_expect_str_eq(addr_class_name(ADDR_PRIVATE), "a private address");
    cr_expect_str_eq(addr_class_name(ADDR_LINK_LOCAL), "a link-local address");
    cr_expect_str_eq(addr_class_name(ADDR_UNSPECIFIED), "the unspecified address");
    cr_expect_str_eq(addr_class_name(ADDR_MULTICAST), "a multicast address");
    cr_expect_str_eq(addr_class_name(ADDR_RESERVED), "a reserved address");
    cr_expect_str_eq(addr_class_name(ADDR_PUBLIC), "a public address");
}

static bool allows(const AddrPolicy *p, const char *text) {
    struct sockaddr_storage ss = addr(text);
    return addr_policy_allows(p, (struct sockaddr *)&ss, NULL);
}

Test(addr_policy, refuses_all_but_public_addresses_by_default) {
    AddrPolicy p = {0};
    const char *refused[] = {"127.0.0.1", "::1", "10.0.0.1", "172.20.1.1", "192.168.0.10",
                             "169.254.169.254", "fe80::1", "fd00::1", "0.0.0.0", "::",
                             "224.0.0.251", "ff02::1", "::ffff:127.0.0.1", "240.0.0.1"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        cr_expect_not(allows(&p, refused[i]), "%s allowed", refused[i]);
    cr_expect(allows(&p, "8.8.8.8"));
    cr_expect(allows(&p, "2606:4700::1111"));
    AddrClass c = ADDR_PUBLIC;
    struct sockaddr_storage ss = addr("169.254.169.254");
    cr_expect_not(addr_policy_allows(&p, (struct sockaddr *)&ss, &c));
    cr_expect_eq(c, ADDR_LINK_LOCAL);
    p.allow_private = true;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        cr_expect(allows(&p, refused[i]), "%s refused with allow_private", refused[i]);
}

Test(addr_policy, allows_the_networks_it_is_given_and_no_more) {
    AddrPolicy p = {0};
    cr_assert_eq(addr_policy_add_nets(&p, "127.0.0.2/32,10.1.0.0/16,fd00:1::/32,192.168.7.9"), 0,
                 "%s", error_get());
    cr_assert_eq(p.num_nets, 4);
    cr_expect(allows(&p, "127.0.0.2"));
    cr_expect_not(allows(&p, "127.0.0.1"));
    cr_expect(allows(&p, "::ffff:127.0.0.2"), "the IPv4 inside a mapped address is in the net");
    cr_expect(allows(&p, "10.1.200.3"));
    cr_expect_not(allows(&p, "10.2.0.1"));
    cr_expect(allows(&p, "fd00:1:ffff::1"));
    cr_expect_not(allows(&p, "fd00:2::1"));
    cr_expect(allows(&p, "192.168.7.9"));
    cr_expect_not(allows(&p, "192.168.7.10"));
    cr_expect_not(allows(&p, "169.254.169.254"));
    AddrPolicy all = {0};
    cr_assert_eq(addr_policy_add_nets(&all, "0.0.0.0/0"), 0, "%s", error_get());
    cr_expect(allows(&all, "169.254.169.254"));
    cr_expect_not(allows(&all, "::1"), "an IPv4 net says nothing of IPv6");
}

Test(addr_policy, refuses_bad_networks_with_the_byte) {
    const struct {
        const char *list, *message;
    } bad[] = {
        {"", "byte 0: expected an address"},
        {"10.0.0.0/8,", "byte 11: expected an address"},
        {"10.0.0.0/8,,1.2.3.4", "byte 11: expected an address"},
        {"10.0.0/8", "byte 0: '10.0.0' is not an IPv4 or IPv6 address"},
        {"localhost", "byte 0: 'localhost' is not an IPv4 or IPv6 address"},
        {"1.2.3.4,10.0.0.0/33", "byte 17: expected a prefix length 0 to 32 after '/', got '33'"},
        {"fd00::/129", "byte 7: expected a prefix length 0 to 128 after '/', got '129'"},
        {"10.0.0.0/", "byte 9: expected a prefix length 0 to 32 after '/'"},
        {"10.0.0.0/-1", "byte 9: expected a prefix length 0 to 32 after '/', got '-1'"},
        {"10.0.0.0/8x", "byte 9: expected a prefix length 0 to 32 after '/', got '8x'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        AddrPolicy p = {0};
        cr_expect_eq(addr_policy_add_nets(&p, bad[i].list), -1, "'%s' accepted", bad[i].list);
        cr_expect(strstr(error_get(), bad[i].message), "'%s': %s", bad[i].list, error_get());
    }
    AddrPolicy p = {0};
    char many[512] = "";
    for (int i = 0; i <= ADDR_POLICY_MAX_NETS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s10.0.%d.0/24", i ? "," : "", i);
    cr_expect_eq(addr_policy_add_nets(&p, many), -1);
    cr_expect(strstr(error_get(), "more than 16 networks"), "%s", error_get());
}
