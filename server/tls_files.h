/* tls_files.h - the files of `traind serve --tls-cert FILE --tls-key FILE`:
 * read, checked before the daemon starts, every error naming the file at
 * fault. */
#ifndef TRAIND_SERVER_TLS_FILES_H
#define TRAIND_SERVER_TLS_FILES_H

typedef struct {
    char *cert, *key; /* PEM text, NUL-terminated */
    char warning[160]; /* "" or, for a key other accounts may read, what to do */
} TlsFiles;

/* Reads both files and checks that GnuTLS takes them: 0, or -1 with
 * an error naming the file (missing, unreadable, not PEM of its kind, too
 * large) or both (a key that is not the certificate's). */
int tls_files_load(const char *cert_path, const char *key_path, TlsFiles *out);
/* Frees the texts, the key's wiped first. */
void tls_files_free(TlsFiles *t);

#endif
