/* multipart.c - MHD's post processor behind multipart.h. */
#include "server/multipart.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

struct Multipart {
    struct MHD_PostProcessor *pp;
    MultipartFn fn;
    void *ctx;
    /* the part in progress, to tell when the next one starts */
    bool in_part;
    char field[128];
    uint64_t seen;
};

static enum MHD_Result on_piece(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding;
    Multipart *mp = cls;
    if (!key) key = "";
    /* MHD calls once as each part starts, with what data it has (maybe
     * none), then only with more data: an empty piece starts a part, and so
     * does one at offset 0 after data. An empty first piece followed by the
     * data at offset 0 is one part. (An empty part followed by a part of the
     * same name whose data came with its headers looks the same, and is
     * taken as one part.) */
    bool first = !mp->in_part || strcmp(key, mp->field) != 0 || size == 0 ||
                 (off == 0 && mp->seen > 0);
    if (first) {
        mp->in_part = true;
        mp->seen = 0;
        size_t n = strlen(key);
        if (n >= sizeof mp->field) n = sizeof mp->field - 1;
        memcpy(mp->field, key, n);
        mp->field[n] = '\0';
    }
    mp->seen += size;
    return mp->fn(mp->ctx, key, filename, first, data, size) == 0 ? MHD_YES : MHD_NO;
}

Multipart *multipart_new(HttpRequest *req, MultipartFn fn, void *ctx) {
    const char *ct = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || !strstr(ct, "boundary=")) return NULL;
    Multipart *mp = calloc(1, sizeof *mp);
    if (!mp) return NULL;
    mp->fn = fn;
    mp->ctx = ctx;
    mp->pp = MHD_create_post_processor(http_connection(req), 64 * 1024, on_piece, mp);
    if (!mp->pp) {
        free(mp);
        return NULL;
    }
    return mp;
}

int multipart_feed(Multipart *mp, const char *data, size_t size) {
    return MHD_post_process(mp->pp, data, size) == MHD_YES ? 0 : -1;
}

int multipart_end(Multipart *mp) {
    if (!mp) return -1;
    int ok = MHD_destroy_post_processor(mp->pp) == MHD_YES ? 0 : -1;
    free(mp);
    return ok;
}
