/* addr_policy.h - which network addresses a URL import may connect to.
 *
 * A daemon that fetches URLs for its users must not become their way into
 * the network it stands in (SSRF): its own loopback services, a cloud's
 * metadata service at 169.254.169.254, the lab's private hosts. So an
 * import may connect only to public addresses unless the daemon is told
 * otherwise (serve --import-allow-private: any address;
 * --import-allow-net CIDR,...: these networks besides the public ones).
 *
 * The check is made on the address a connection is about to be opened to
 * (server/url_fetch.c), after DNS and for each redirect, so neither a
 * hostname that resolves to 127.0.0.1 nor a redirect nor DNS rebinding gets
 * past it. An IPv6 address that carries an IPv4 one (::ffff:a.b.c.d,
 * ::a.b.c.d, 64:ff9b::a.b.c.d, 2002:aabb:ccdd::) is judged by the IPv4
 * address it reaches.
 */
#ifndef TRAIND_SERVER_ADDR_POLICY_H
#define TRAIND_SERVER_ADDR_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum {
    ADDR_PUBLIC,
    ADDR_LOOPBACK,    /* 127/8, ::1 */
    ADDR_PRIVATE,     /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10 */
    ADDR_LINK_LOCAL,  /* 169.254/16, fe80::/10 */
    ADDR_UNSPECIFIED, /* 0/8, :: */
    ADDR_MULTICAST,   /* 224/4, ff00::/8 */
    ADDR_RESERVED,    /* 240/4, documentation and benchmark nets, 100::/64, not IP */
} AddrClass;

/* The class of an AF_INET or AF_INET6 socket address (anything else is
 * ADDR_RESERVED). */
AddrClass addr_classify(const struct sockaddr *sa);
/* "a loopback address", "the unspecified address", ... for messages. */
const char *addr_class_name(AddrClass c);
/* The address as numeric text ("127.0.0.1", "::1") into buf. */
void addr_format(const struct sockaddr *sa, char *buf, size_t size);
/* A numeric host ("10.0.0.1", "::1", "[::1]") into *out; false when host
 * is not a numeric address (a name). */
bool addr_parse(const char *host, struct sockaddr_storage *out);

#define ADDR_POLICY_MAX_NETS 16

typedef struct {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network byte order; 4 used for AF_INET */
    int prefix;        /* bits */
} AddrNet;

typedef struct {
    bool allow_private; /* every address is allowed */
    int num_nets;
    AddrNet nets[ADDR_POLICY_MAX_NETS]; /* allowed whatever their class */
} AddrPolicy;

/* Adds the networks of a comma-separated list ("127.0.0.2/32,fd00::/8";
 * an address alone is a network of one): 0, or -1 with an error naming the
 * byte where the list goes wrong. */
int addr_policy_add_nets(AddrPolicy *p, const char *list);
/* Whether the policy lets a connection go to sa; *cls (may be NULL) gets
 * its class. */
bool addr_policy_allows(const AddrPolicy *p, const struct sockaddr *sa, AddrClass *cls);

#endif
