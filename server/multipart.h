/* multipart.h - multipart/form-data bodies, parsed as they stream in.
 *
 * A thin layer over libmicrohttpd's post processor: each part's bytes reach
 * a callback piece by piece, as they arrive from the socket, so an upload
 * of any size goes straight to a file (server/routes/dataset_upload.c)
 * and never sits whole in memory. The callback is told when a new part
 * starts, so it can close the previous file and open the next.
 */
#ifndef TRAIND_SERVER_MULTIPART_H
#define TRAIND_SERVER_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/http.h"

typedef struct Multipart Multipart;

/* One piece of a part. field is the part's name; filename is NULL for a
 * plain field; first is true on the first piece of a part (size may be 0).
 * Returns 0 to go on, -1 to abort the parse. */
typedef int (*MultipartFn)(void *ctx, const char *field, const char *filename, bool first,
                           const char *data, size_t size);

/* For a request the caller found multipart/form-data
 * (http_content_type_is): NULL when its Content-Type gives no boundary (or
 * out of memory); the caller replies. */
Multipart *multipart_new(HttpRequest *req, MultipartFn fn, void *ctx);
/* Feeds body bytes. 0, or -1 when the body is malformed or fn aborted. */
int multipart_feed(Multipart *mp, const char *data, size_t size);
/* Frees; returns 0 when the body ended with its closing boundary, -1 when
 * it was cut short or malformed. NULL is fine (returns -1). */
int multipart_end(Multipart *mp);

#endif
