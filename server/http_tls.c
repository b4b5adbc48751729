/* http_tls.c - GnuTLS sessions for the server; see http_tls.h. */
#include "server/http_tls.h"

#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* TLS 1.2 and 1.3 only, AEAD ciphers over an ECDHE key exchange (no
 * static RSA, no finite-field DHE, no CBC): whatever GnuTLS's or the system's defaults allow,
 * a lab's server speaks nothing older. Parsed once, for every session. */
#define TLS_PRIORITY                                                                           \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"      \
    "+CHACHA20-POLY1305:-RSA:-DHE-RSA:%SERVER_PRECEDENCE"

/* One certificate and key. A session keeps the one current when it
 * began (GnuTLS reads it until the session ends), so a replaced one is
 * freed with the last session that holds it. */
typedef struct {
    gnutls_certificate_credentials_t cert;
    atomic_int holders; /* HttpTlsCreds while current, and each session */
} TlsCert;

struct HttpTlsCreds {
    pthread_mutex_t lock; /* over current: swapped by a reload, read by each new session */
    TlsCert *current;
    gnutls_priority_t priority;
};

struct HttpTls {
    gnutls_session_t session;
    TlsCert *cert;
    int failure; /* the handshake's fatal error, 0 for none */
    char why[128];
};

static void cert_release(TlsCert *t) {
    if (!t || atomic_fetch_sub(&t->holders, 1) != 1) return;
    gnutls_certificate_free_credentials(t->cert);
    free(t);
}

/* The certificate and key from PEM text, held once; NULL with an error. */
static TlsCert *cert_new(const char *cert_pem, const char *key_pem) {
    TlsCert *t = calloc(1, sizeof *t);
    if (!t || gnutls_certificate_allocate_credentials(&t->cert) < 0) {
        free(t);
        error_set("TLS: out of memory");
        return NULL;
    }
    atomic_init(&t->holders, 1);
    gnutls_datum_t cert = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t key = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    int rc = gnutls_certificate_set_x509_key_mem(t->cert, &cert, &key, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        error_set("GnuTLS cannot use the certificate and key: %s", gnutls_strerror(rc));
        cert_release(t);
        return NULL;
    }
    return t;
}

HttpTlsCreds *http_tls_creds_new(const char *cert_pem, const char *key_pem) {
    HttpTlsCreds *c = calloc(1, sizeof *c);
    if (!c) {
        error_set("TLS: out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    if (!(c->current = cert_new(cert_pem, key_pem))) {
        http_tls_creds_free(c);
        return NULL;
    }
    const char *at = NULL;
    int rc = gnutls_priority_init(&c->priority, TLS_PRIORITY, &at);
    if (rc < 0) {
        error_set("GnuTLS refuses the priority string at '%s': %s", at ? at : "",
                  gnutls_strerror(rc));
        http_tls_creds_free(c);
        return NULL;
    }
    return c;
}

int http_tls_creds_replace(HttpTlsCreds *c, const char *cert_pem, const char *key_pem) {
    TlsCert *fresh = cert_new(cert_pem, key_pem);
    if (!fresh) return -1;
    pthread_mutex_lock(&c->lock);
    TlsCert *old = c->current;
    c->current = fresh;
    pthread_mutex_unlock(&c->lock);
    cert_release(old);
    return 0;
}

void http_tls_creds_free(HttpTlsCreds *c) {
    if (!c) return;
    cert_release(c->current);
    if (c->priority) gnutls_priority_deinit(c->priority);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The current certificate, held for a session. */
static TlsCert *cert_hold(HttpTlsCreds *c) {
    pthread_mutex_lock(&c->lock);
    TlsCert *t = c->current;
    atomic_fetch_add(&t->holders, 1);
    pthread_mutex_unlock(&c->lock);
    return t;
}

HttpTls *http_tls_new(HttpTlsCreds *creds, int fd) {
    HttpTls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (gnutls_init(&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
        free(t);
        return NULL;
    }
    t->cert = cert_hold(creds);
    if (gnutls_priority_set(t->session, creds->priority) < 0 ||
        gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->cert->cert) < 0) {
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
    cert_release(t->cert);
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
    if (rc == GNUTLS_E_SUCCESS) return 1;
    int r = (int)tls_result(rc);
    if (r < 0) t->failure = rc;
    return r;
}

const char *http_tls_handshake_error(HttpTls *t) {
    /* a client gone without a word (a port check, a scan) is no error */
    if (!t->failure || t->failure == GNUTLS_E_PREMATURE_TERMINATION ||
        t->failure == GNUTLS_E_PULL_ERROR || t->failure == GNUTLS_E_PUSH_ERROR)
        return NULL;
    if (t->failure == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        const char *alert = gnutls_alert_get_name(gnutls_alert_get(t->session));
        snprintf(t->why, sizeof t->why, "the client ended the handshake: %s",
                 alert ? alert : "an alert");
    } else {
        snprintf(t->why, sizeof t->why, "%s", gnutls_strerror(t->failure));
    }
    return t->why;
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
