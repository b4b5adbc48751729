/* serve_reload.h - what `traind serve` does on SIGHUP: it reads again the
 * files it was started with that an admin replaces while it runs, a renewed
 * certificate (--tls-cert, --tls-key) and a rotated scrape token
 * (--metrics-token-file). What cannot be read, or is refused, is logged
 * and the one in use kept: a bad file never stops a running daemon.
 */
#ifndef TRAIND_SERVER_SERVE_RELOAD_H
#define TRAIND_SERVER_SERVE_RELOAD_H

#include "server/api.h"
#include "server/http.h"
#include "server/serve_options.h"

/* Reloads, logging one "reload" line per file set (or one saying there is
 * none). Called from the main thread while http serves. */
void serve_reload(const ServeOptions *o, HttpServer *http, Api *api);

#endif
