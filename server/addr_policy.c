/* addr_policy.c - address classes and the import policy; see
 * addr_policy.h. Each class is a table of networks (IANA's special-purpose
 * registries, RFC 6890), matched by prefix. */
#include "server/addr_policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    uint8_t addr[16];
    int prefix;
    AddrClass cls;
} ClassNet;

static const ClassNet V4_NETS[] = {
    {{0}, 8, ADDR_UNSPECIFIED},               /* "this network": 0.0.0.0 reaches the host */
    {{127}, 8, ADDR_LOOPBACK},
    {{10}, 8, ADDR_PRIVATE},
    {{172, 16}, 12, ADDR_PRIVATE},
    {{192, 168}, 16, ADDR_PRIVATE},
    {{100, 64}, 10, ADDR_PRIVATE},            /* carrier-grade NAT, RFC 6598 */
    {{169, 254}, 16, ADDR_LINK_LOCAL},        /* cloud metadata services live here */
    {{224}, 4, ADDR_MULTICAST},
    {{240}, 4, ADDR_RESERVED},                /* and 255.255.255.255 */
    {{192, 0, 0}, 24, ADDR_RESERVED},
    {{192, 0, 2}, 24, ADDR_RESERVED},
    {{198, 18}, 15, ADDR_RESERVED},
    {{198, 51, 100}, 24, ADDR_RESERVED},
    {{203, 0, 113}, 24, ADDR_RESERVED},
};

static const ClassNet V6_NETS[] = {
    {{0}, 128, ADDR_UNSPECIFIED},
    {{[15] = 1}, 128, ADDR_LOOPBACK},
    {{0xfc}, 7, ADDR_PRIVATE},                /* unique-local */
    {{0xfe, 0xc0}, 10, ADDR_PRIVATE},         /* site-local, deprecated but routed by some */
    {{0xfe, 0x80}, 10, ADDR_LINK_LOCAL},
    /* local-use NAT64 (RFC 8215): the operator picks the prefix's length
     * in it, so where the IPv4 address sits (RFC 6052) cannot be known;
     * the network's own, as unique-local addresses are */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, ADDR_PRIVATE},
    {{0xff}, 8, ADDR_MULTICAST},
    {{0x01, 0x00}, 64, ADDR_RESERVED},        /* discard */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, ADDR_RESERVED},
};

/* IPv6 forms that reach an IPv4 address, and where its 4 bytes are. */
static const struct {
    uint8_t addr[16];
    int prefix, at;
} V6_CARRIES_V4[] = {
    {{[10] = 0xff, [11] = 0xff}, 96, 12}, /* ::ffff:a.b.c.d, IPv4-mapped */
    {{0}, 96, 12},                        /* ::a.b.c.d, IPv4-compatible */
    {{0x00, 0x64, 0xff, 0x9b}, 96, 12},   /* 64:ff9b::a.b.c.d, NAT64 */
    {{0x20, 0x02}, 16, 2},                /* 2002:aabb:ccdd::, 6to4 */
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, int prefix) {
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)full) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static AddrClass classify_table(const uint8_t *a, const ClassNet *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (prefix_match(a, t[i].addr, t[i].prefix)) return t[i].cls;
    return ADDR_PUBLIC;
}

/* The IPv4 address an IPv6 one carries into v4 (4 bytes): true when it
 * carries one. :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1. */
static bool embedded_v4(const uint8_t *a6, uint8_t *v4) {
    static const uint8_t zero[15] = {0};
    if (memcmp(a6, zero, 15) == 0 && a6[15] <= 1) return false;
    for (size_t i = 0; i < sizeof V6_CARRIES_V4 / sizeof *V6_CARRIES_V4; i++)
        if (prefix_match(a6, V6_CARRIES_V4[i].addr, V6_CARRIES_V4[i].prefix)) {
            memcpy(v4, a6 + V6_CARRIES_V4[i].at, 4);
            return true;
        }
    return false;
}

AddrClass addr_classify(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        return classify_table(a, V4_NETS, sizeof V4_NETS / sizeof *V4_NETS);
    }
    if (sa->sa_family != AF_INET6) return ADDR_RESERVED;
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    uint8_t v4[4];
    if (embedded_v4(a, v4)) return classify_table(v4, V4_NETS, sizeof V4_NETS / sizeof *V4_NETS);
    return classify_table(a, V6_NETS, sizeof V6_NETS / sizeof *V6_NETS);
}

const char *addr_class_name(AddrClass c) {
    switch (c) {
    case ADDR_PUBLIC: return "a public address";
    case ADDR_LOOPBACK: return "a loopback address";
    case ADDR_PRIVATE: return "a private address";
    case ADDR_LINK_LOCAL: return "a link-local address";
    case ADDR_UNSPECIFIED: return "the unspecified address";
    case ADDR_MULTICAST: return "a multicast address";
    case ADDR_RESERVED: break;
    }
    return "a reserved address";
}

void addr_format(const struct sockaddr *sa, char *buf, size_t size) {
    const void *a = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (size == 0) return;
    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        !inet_ntop(sa->sa_family, a, buf, (socklen_t)size))
        snprintf(buf, size, "(address family %d)", sa->sa_family);
}

bool addr_parse(const char *host, struct sockaddr_storage *out) {
    char h[INET6_ADDRSTRLEN + 32];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') host++, n -= 2;
    if (n == 0 || n >= sizeof h) return false;
    memcpy(h, host, n);
    h[n] = '\0';
    /* getaddrinfo's numeric forms are what a resolver would take too:
     * "127.1", "2130706433", "0x7f.0.0.1" */
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(h, NULL, &hints, &ai) != 0 || !ai) return false;
    memset(out, 0, sizeof *out);
    memcpy(out, ai->ai_addr, ai->ai_addrlen < sizeof *out ? ai->ai_addrlen : sizeof *out);
    freeaddrinfo(ai);
    return true;
}

/* One "addr[/prefix]" of length n starting at byte `at` of the list. */
static int parse_net(const char *s, size_t n, size_t at, AddrNet *out) {
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    if (alen == 0 || alen >= sizeof buf)
        return error_set("byte %zu: expected an address (10.0.0.0/8, fd00::/8)", at);
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return error_set("byte %zu: '%s' is not an IPv4 or IPv6 address", at, buf);
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (!slash) return 0;
    size_t plen = n - alen - 1;
    char pbuf[8];
    char *end;
    if (plen == 0 || plen >= sizeof pbuf)
        return error_set("byte %zu: expected a prefix length 0 to %d after '/'", at + alen + 1, max);
    memcpy(pbuf, slash + 1, plen);
    pbuf[plen] = '\0';
    long p = strtol(pbuf, &end, 10);
    if (*end || pbuf[0] < '0' || pbuf[0] > '9' || p > max)
        return error_set("byte %zu: expected a prefix length 0 to %d after '/', got '%s'",
                         at + alen + 1, max, pbuf);
    out->prefix = (int)p;
    return 0;
}

int addr_policy_add_nets(AddrPolicy *p, const char *list) {
    size_t at = 0, len = strlen(list);
    for (;;) {
        const char *comma = memchr(list + at, ',', len - at);
        size_t n = comma ? (size_t)(comma - (list + at)) : len - at;
        if (p->num_nets == ADDR_POLICY_MAX_NETS)
            return error_set("byte %zu: more than %d networks", at, ADDR_POLICY_MAX_NETS);
        if (parse_net(list + at, n, at, &p->nets[p->num_nets]) != 0) return -1;
        p->num_nets++;
        if (!comma) return 0;
        at += n + 1;
    }
}

static bool in_net(const AddrNet *net, int family, const uint8_t *a) {
    return net->family == family && prefix_match(a, net->addr, net->prefix);
}

bool addr_policy_allows(const AddrPolicy *p, const struct sockaddr *sa, AddrClass *cls) {
    AddrClass c = addr_classify(sa);
    if (cls) *cls = c;
    if (p->allow_private || c == ADDR_PUBLIC) return true;
    const uint8_t *a = NULL;
    uint8_t v4[4];
    bool carries = false;
    if (sa->sa_family == AF_INET)
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        carries = embedded_v4(a, v4);
    }
    for (int i = 0; a && i < p->num_nets; i++)
        if (in_net(&p->nets[i], sa->sa_family, a) || (carries && in_net(&p->nets[i], AF_INET, v4)))
            return true;
    return false;
}
