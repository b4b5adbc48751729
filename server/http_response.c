/* http_response.c - replies and their head; see http_response.h. */
#include "server/http_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static HttpResponse *response_new(int status, HttpResponseKind kind) {
    HttpResponse *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->status = status;
    r->kind = kind;
    r->fd = -1;
    return r;
}

HttpResponse *http_response_bytes(int status, const char *data, size_t len,
                                  void (*release)(void *cls), void *cls) {
    HttpResponse *r = response_new(status, HTTP_RESPONSE_BYTES);
    if (!r) {
        if (release) release(cls);
        return NULL;
    }
    r->data = data;
    r->len = len;
    r->release = release;
    r->cls = cls;
    return r;
}

HttpResponse *http_response_copy(int status, const char *data, size_t len) {
    char *copy = malloc(len ? len : 1);
    if (!copy) return NULL;
    memcpy(copy, data, len);
    return http_response_bytes(status, copy, len, free, copy);
}

HttpResponse *http_response_fd(int status, int fd, uint64_t size) {
    HttpResponse *r = response_new(status, HTTP_RESPONSE_FD);
    if (!r) {
        close(fd);
        return NULL;
    }
    r->fd = fd;
    r->size = size;
    return r;
}

HttpResponse *http_response_stream(int status, HttpStreamFn fn, void *ctx,
                                   void (*free_ctx)(void *ctx)) {
    HttpResponse *r = response_new(status, HTTP_RESPONSE_STREAM);
    if (!r) {
        if (free_ctx) free_ctx(ctx);
        return NULL;
    }
    r->fn = fn;
    r->ctx = ctx;
    r->free_ctx = free_ctx;
    return r;
}

HttpResponse *http_response_later(HttpResponse *(*later)(void *ctx), void *ctx) {
    HttpResponse *r = response_new(0, HTTP_RESPONSE_LATER);
    if (r) r->later = later, r->ctx = ctx;
    return r;
}

int http_response_add(HttpResponse *r, const char *name, const char *value) {
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -1;
    if (!strcasecmp(name, "Connection")) {
        if (!strcasecmp(value, "close")) r->close = true;
        return 0;
    }
    size_t need = strlen(name) + strlen(value) + 4;
    if (r->fields_len + need + 1 > r->fields_cap) {
        size_t cap = r->fields_cap ? r->fields_cap : 256;
        while (cap < r->fields_len + need + 1) cap *= 2;
        char *grown = realloc(r->fields, cap);
        if (!grown) return -1;
        r->fields = grown;
        r->fields_cap = cap;
    }
    r->fields_len += (size_t)snprintf(r->fields + r->fields_len, need + 1, "%s: %s\r\n", name,
                                      value);
    return 0;
}

void http_response_free(HttpResponse *r) {
    if (!r) return;
    if (r->release) r->release(r->cls);
    if (r->fd >= 0) close(r->fd);
    if (r->free_ctx) r->free_ctx(r->ctx);
    free(r->fields);
    free(r);
}

const char *http_reason(int status) {
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"}, {200, "OK"}, {201, "Created"}, {202, "Accepted"},
        {204, "No Content"}, {206, "Partial Content"}, {301, "Moved Permanently"},
        {302, "Found"}, {304, "Not Modified"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
        {408, "Request Timeout"}, {409, "Conflict"}, {410, "Gone"}, {411, "Length Required"},
        {413, "Content Too Large"}, {414, "URI Too Long"}, {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"}, {417, "Expectation Failed"},
        {422, "Unprocessable Content"}, {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
        {501, "Not Implemented"}, {502, "Bad Gateway"}, {503, "Service Unavailable"},
        {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
        {507, "Insufficient Storage"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
        if (reasons[i].status == status) return reasons[i].reason;
    return "Unknown";
}

char *http_response_head(const HttpResponse *r, int minor, bool keep_alive, size_t *len) {
    char date[64], framing[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    uint64_t length = r->kind == HTTP_RESPONSE_BYTES ? r->len : r->size;
    if (r->status == 204 || r->status == 304 || r->status < 200)
        framing[0] = '\0'; /* RFC 9110: no Content-Length, and never a body */
    else if (r->kind != HTTP_RESPONSE_STREAM)
        snprintf(framing, sizeof framing, "Content-Length: %llu\r\n", (unsigned long long)length);
    else /* HTTP/1.0 has no chunks: the body ends where the connection does */
        snprintf(framing, sizeof framing, "%s", minor ? "Transfer-Encoding: chunked\r\n" : "");
    const char *connection = !keep_alive ? "Connection: close\r\n"
                             : minor == 0 ? "Connection: keep-alive\r\n"
                                          : "";
    size_t cap = r->fields_len + 256;
    char *head = malloc(cap);
    if (!head) return NULL;
    int n = snprintf(head, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%.*s\r\n", r->status,
                     http_reason(r->status), date, framing, connection, (int)r->fields_len,
                     r->fields ? r->fields : "");
    *len = (size_t)n;
    return head;
}
