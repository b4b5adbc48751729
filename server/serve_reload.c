/* serve_reload.c - SIGHUP's reload of --tls-cert, --tls-key and
 * --metrics-token-file; see serve_reload.h. */
#include "server/serve_reload.h"

#include "core/error.h"
#include "server/log.h"
#include "server/metrics_token.h"
#include "server/tls_files.h"

/* One "reload" line: the option, and what came of it. */
static void log_reload(const char *option, const char *path, const char *error,
                       const char *warning) {
    json_t *l = json_pack("{s:s, s:s, s:b}", "option", option, "file", path, "ok", !error);
    if (l && error) json_object_set_new(l, "error", json_string(error));
    if (l && warning && warning[0]) json_object_set_new(l, "warning", json_string(warning));
    log_json("reload", l);
}

static void reload_tls(const ServeOptions *o, HttpServer *http) {
    TlsFiles tls;
    int rc = tls_files_load(o->tls_cert, o->tls_key, &tls);
    if (rc == 0) rc = http_server_replace_tls(http, tls.cert, tls.key);
    log_reload("--tls-cert", o->tls_cert, rc ? error_get() : NULL, rc ? NULL : tls.warning);
    tls_files_free(&tls);
}

static void reload_metrics_token(const ServeOptions *o, Api *api) {
    char sha256_hex[SHA256_HEX_LEN + 1];
    int rc = metrics_token_load(o->metrics_token_file, sha256_hex);
    if (rc == 0) api_set_metrics_token(api, sha256_hex);
    log_reload("--metrics-token-file", o->metrics_token_file, rc ? error_get() : NULL, NULL);
}

void serve_reload(const ServeOptions *o, HttpServer *http, Api *api) {
    if (o->tls_cert) reload_tls(o, http);
    if (o->metrics_token_file) reload_metrics_token(o, api);
    if (!o->tls_cert && !o->metrics_token_file)
        log_message("reload", "SIGHUP: nothing to read again (no --tls-cert or "
                              "--metrics-token-file)");
}
