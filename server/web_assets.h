/* web_assets.h - the dashboard's files (web/), built into the daemon.
 *
 * scripts/embed_web.py writes the table (build/gen/web_assets.c) from the
 * files under web/ at build time; server/routes/web.c serves it.
 */
#ifndef TRAIND_SERVER_WEB_ASSETS_H
#define TRAIND_SERVER_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name; /* the file's base name: "index.html", "app.js" */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t size;
} WebAsset;

extern const WebAsset web_assets[];
extern const int web_num_assets;

#endif
