/* tls_files.c - loading --tls-cert and --tls-key; see tls_files.h. */
#include "server/tls_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "server/http.h"

/* A certificate chain or a key is a few KiB; a larger file is a mistake. */
#define TLS_FILE_MAX (1 << 20)

/* The whole of path as a string, or NULL with an error naming opt and path. */
static char *read_text(const char *opt, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set("%s %s: %s", opt, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(TLS_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
    int bad = buf && ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (!buf || bad || n > TLS_FILE_MAX) {
        if (!buf) error_set("%s %s: out of memory", opt, path);
        else if (bad) error_set("%s %s: cannot read: %s", opt, path, strerror(bad));
        else error_set("%s %s: larger than %d bytes", opt, path, TLS_FILE_MAX);
        if (buf) explicit_bzero(buf, n);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* path's text, which must hold a PEM block ending in kind ("CERTIFICATE",
 * "PRIVATE KEY"); NULL with an error otherwise. */
static char *read_pem(const char *opt, const char *path, const char *kind) {
    char *text = read_text(opt, path);
    if (!text) return NULL;
    char end[64];
    snprintf(end, sizeof end, "%s-----", kind);
    if (!strstr(text, "-----BEGIN ") || !strstr(text, end)) {
        error_set("%s %s: no PEM %s in it (a block '-----BEGIN ...%s')", opt, path, kind, end);
        explicit_bzero(text, strlen(text)); /* a key's, maybe */
        free(text);
        return NULL;
    }
    return text;
}

int tls_files_load(const char *cert_path, const char *key_path, TlsFiles *out) {
    *out = (TlsFiles){0};
    out->cert = read_pem("--tls-cert", cert_path, "CERTIFICATE");
    if (out->cert) out->key = read_pem("--tls-key", key_path, "PRIVATE KEY");
    if (!out->key) {
        tls_files_free(out);
        return -1;
    }
    if (http_tls_check(out->cert, out->key) != 0) {
        error_prefix("--tls-cert %s with --tls-key %s", cert_path, key_path);
        tls_files_free(out);
        return -1;
    }
    /* said, not refused: the admin may have meant it (a group of daemons) */
    struct stat st;
    if (stat(key_path, &st) == 0 && (st.st_mode & 077))
        snprintf(out->warning, sizeof out->warning,
                 "--tls-key %.64s: mode %03o lets other accounts read the key (chmod 600 it)",
                 key_path, (unsigned)(st.st_mode & 0777));
    return 0;
}

void tls_files_free(TlsFiles *t) {
    free(t->cert);
    if (t->key) explicit_bzero(t->key, strlen(t->key));
    free(t->key);
    *t = (TlsFiles){0};
}
