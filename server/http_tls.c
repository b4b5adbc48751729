/* http_tls.c - GnuTLS sessions for the server; see http_tls.h. */
#include "server/http_tls.h"

#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* TLS 1.2 and 1.3 only, AEAD ciphers over an ECDHE key exchange (no
 * static RSA, no finite-field DHE, no CBC): whatever GnuTLS's or the system's defaults allow,
 * a lab's server speaks nothing older. Parsed once, for every session. */
#define TLS_PRIORITY                                                                           \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"      \
    "+CHACHA20-POLY1305:-RSA:-DHE-RSA:%SERVER_PRECEDENCE"

struct HttpTlsCreds {
    gnutls_certificate_credentials_t cert;
    gnutls_priority_t priority;
};

struct HttpTls {
    gnutls_session_t session;
};

HttpTlsCreds *http_tls_creds_new(const char *cert_pem, const char *key_pem) {
    HttpTlsCreds *c = calloc(1, sizeof *c);
    if (!c || gnutls_certificate_allocate_credentials(&c->cert) < 0) {
        free(c);
        error_set("TLS: out of memory");
        return NULL;
    }
    gnutls_datum_t cert = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t key = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    int rc = gnutls_certificate_set_x509_key_mem(c->cert, &cert, &key, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        error_set("GnuTLS cannot use the certificate and key: %s", gnutls_strerror(rc));
        http_tls_creds_free(c);
        return NULL;
    }
    const char *at = NULL;
    if ((rc = gnutls_priority_init(&c->priority, TLS_PRIORITY, &at)) < 0) {
        error_set("GnuTLS refuses the priority string at '%s': %s", at ? at : "",
                  gnutls_strerror(rc));
        http_tls_creds_free(c);
        return NULL;
    }
    return c;
}

void http_tls_creds_free(HttpTlsCreds *c) {
    if (!c) return;
    gnutls_certificate_free_credentials(c->cert);
    if (c->priority) gnutls_priority_deinit(c->priority);
    free(c);
}

HttpTls *http_tls_new(HttpTlsCreds *creds, int fd) {
    HttpTls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (gnutls_init(&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
        free(t);
        return NULL;
    }
    if (gnutls_priority_set(t->session, creds->priority) < 0 ||
        gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, creds->cert) < 0) {
        http_tls_free(t);
        return NULL;
    }
    gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
    gnutls_transport_set_int(t->session, fd);
    return t;
}

void http_tls_free(HttpTls *t) {
    if (!t) return;
    gnutls_deinit(t->session);
    free(t);
}

/* GnuTLS's result as ours: retry, or a fatal error (-1); warnings retry. */
static ssize_t tls_result(ssize_t rc) {
    if (rc >= 0) return rc;
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return HTTP_TLS_AGAIN;
    return gnutls_error_is_fatal((int)rc) ? -1 : HTTP_TLS_AGAIN;
}

int http_tls_handshake(HttpTls *t) {
    int rc = gnutls_handshake(t->session);
    return rc == GNUTLS_E_SUCCESS ? 1 : (int)tls_result(rc);
}

ssize_t http_tls_recv(HttpTls *t, void *buf, size_t max) {
    ssize_t rc = gnutls_record_recv(t->session, buf, max);
    if (rc == GNUTLS_E_PREMATURE_TERMINATION) return 0; /* the client left without close_notify */
    /* a client's renegotiation (TLS 1.2): not answered, so not waited on */
    if (rc == GNUTLS_E_REHANDSHAKE) return -1;
    return tls_result(rc);
}

ssize_t http_tls_send(HttpTls *t, const void *buf, size_t len) {
    return tls_result(gnutls_record_send(t->session, buf, len));
}

bool http_tls_pending(HttpTls *t) { return gnutls_record_check_pending(t->session) > 0; }

bool http_tls_wants_write(HttpTls *t) { return gnutls_record_get_direction(t->session) == 1; }

void http_tls_bye(HttpTls *t) { gnutls_bye(t->session, GNUTLS_SHUT_WR); }
