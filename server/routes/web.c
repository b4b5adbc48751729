/* web.c - the dashboard: its page (GET /) and files (GET /assets/{name}),
 * served from the daemon's own binary (server/web_assets.h, made from
 * web/). Public routes: the page holds no data of anyone's. It asks the
 * /v1 API with the token its user gives it, so every rule of who sees what
 * holds in the page as it does for curl. */
#include <string.h>

#include "server/api.h"
#include "server/web_assets.h"

/* Where the page's code may come from and talk to: this daemon only (no
 * CDN, no inline script), and no other site may frame it. */
#define WEB_POLICY                                                                          \
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "       \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

static const WebAsset *asset_named(const char *name) {
    for (int i = 0; i < web_num_assets; i++)
        if (!strcmp(web_assets[i].name, name)) return &web_assets[i];
    return NULL;
}

static int reply_asset(HttpRequest *req, const char *name) {
    const WebAsset *a = asset_named(name);
    if (!a)
        return http_reply_error(req, 404, "not_found", NULL,
                                "the dashboard has no file '%.64s'", name);
    /* the bytes are the binary's own: lent, nothing to release */
    http_reply_shared(req, 200, a->type, (const char *)a->data, a->size, NULL, NULL);
    http_reply_header(req, "Content-Security-Policy", WEB_POLICY); /* no-store, nosniff: http.c */
    return 0;
}

int web_index(HttpRequest *req) { return reply_asset(req, "index.html"); }

int web_asset(HttpRequest *req) { return reply_asset(req, http_param(req, 0)); }
