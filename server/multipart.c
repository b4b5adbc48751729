/* multipart.c - a streaming multipart/form-data parser (multipart.h).
 *
 * A state machine fed bytes in any pieces. Content is searched for the
 * delimiter CRLF "--boundary" with glibc's memmem (linear in the worst
 * case: two-way; several GB/s on real and on hostile content), then, when
 * a piece holds no whole delimiter, its last bytes for the start of one.
 * The boundary holds no CR (multipart_new refuses control bytes), so a CR
 * is the only byte a delimiter can start at, and after a mismatch the
 * bytes compared need no second look. Content goes to the callback
 * straight from the caller's buffer; a delimiter cut by the end of a piece
 * is only counted (its bytes are the delimiter's own), and given to the
 * callback as content should the next piece not complete it. The body is
 * searched as if it began with CRLF, so that a first "--boundary" at its
 * very start is found.
 */
#include "server/multipart.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
    MP_PREAMBLE, /* before the first delimiter: discarded */
    MP_DELIM,    /* just after a delimiter */
    MP_DASH,     /* after "--boundary-" */
    MP_PADDING,  /* spaces and tabs after a delimiter */
    MP_CR,       /* a CR after a delimiter */
    MP_HEADERS,  /* a part's header block */
    MP_CONTENT,  /* a part's content */
    MP_EPILOGUE, /* after the closing delimiter: the body is whole */
    MP_FAILED,   /* malformed, or the callback aborted */
} MpState;

struct Multipart {
    MultipartFn fn;
    void *ctx;
    MpState state;
    char delim[4 + MULTIPART_BOUNDARY_MAX + 1]; /* CRLF "--" boundary */
    size_t delim_len;
    size_t matched; /* bytes of delim at the end of what was fed */
    /* the header block in progress: its size, its current line */
    size_t head_len, line_len;
    char line[MULTIPART_HEADERS_MAX + 1];
    bool has_disposition, has_name, has_filename;
    char field[MULTIPART_NAME_MAX + 1];
    char filename[MULTIPART_HEADERS_MAX + 1];
};

static bool is_space(char c) { return c == ' ' || c == '\t'; }

static const char *skip_space(const char *s) {
    while (is_space(*s)) s++;
    return s;
}

/* A parameter's name, after the value before it: ";" OWS name OWS "=" OWS.
 * 1 with *s at the value, 0 at the end of the header, -1 when malformed.
 * Empty parameters (";;", a ';' last) are passed over. */
static int param_name(const char **s, const char **name, size_t *len) {
    const char *p = skip_space(*s);
    for (;;) {
        if (!*p) return 0;
        if (*p != ';') return -1;
        p = skip_space(p + 1);
        if (*p && *p != ';') break;
    }
    *name = p;
    while (*p && *p != '=' && *p != ';' && *p != '"' && !is_space(*p)) p++;
    *len = (size_t)(p - *name);
    p = skip_space(p);
    if (!*len || *p != '=') return -1;
    *s = skip_space(p + 1);
    return 1;
}

/* A parameter's value at *s, a token or a quoted string, into out (cap
 * bytes with the NUL; NULL to pass it over). In a quoted string a
 * backslash escapes only '"' and '\': browsers send "C:\dir\a.csv" as it
 * is. 0, or -1 when malformed, empty or over cap. */
static int param_value(const char **s, char *out, size_t cap) {
    const char *p = *s;
    size_t n = 0;
    bool quoted = *p == '"';
    if (quoted) {
        for (p++; *p != '"'; p++) {
            if (!*p) return -1; /* no closing quote */
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
            if (out && n + 1 >= cap) return -1;
            if (out) out[n] = *p;
            n++;
        }
        p++;
    } else {
        for (; *p && *p != ';' && !is_space(*p); p++) {
            if (*p == '"') return -1;
            if (out && n + 1 >= cap) return -1;
            if (out) out[n] = *p;
            n++;
        }
        if (!n) return -1;
    }
    if (out) out[n] = '\0';
    *s = p;
    return 0;
}

static bool name_is(const char *name, size_t len, const char *want) {
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* The boundary of a Content-Type: 0 with it in out, or -1. */
static int boundary_of(const char *ct, char *out, size_t cap) {
    const char *s = strchr(ct, ';'), *name;
    size_t len;
    bool found = false;
    int r;
    while (s && (r = param_name(&s, &name, &len)) != 0) {
        if (r < 0) return -1;
        bool mine = name_is(name, len, "boundary");
        if (mine && found) return -1; /* two: which? */
        found |= mine;
        if (param_value(&s, mine ? out : NULL, cap) != 0) return -1;
    }
    if (!found) return -1;
    size_t n = strlen(out);
    if (!n) return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e) return -1;
    return out[n - 1] == ' ' ? -1 : 0; /* RFC 2046: not a space last */
}

Multipart *multipart_new(const char *content_type, MultipartFn fn, void *ctx) {
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    if (!content_type || boundary_of(content_type, boundary, sizeof boundary) != 0) return NULL;
    Multipart *mp = calloc(1, sizeof *mp);
    if (!mp) return NULL;
    mp->fn = fn;
    mp->ctx = ctx;
    size_t n = strlen(boundary);
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, n + 1);
    mp->delim_len = 4 + n;
    mp->state = MP_PREAMBLE;
    mp->matched = 2; /* the CRLF the body is searched as if it began with */
    return mp;
}

static void fail(Multipart *mp) { mp->state = MP_FAILED; }

/* Content to the callback (the preamble's to nowhere): 0, or -1 when it
 * aborted. */
static int deliver(Multipart *mp, const char *data, size_t size) {
    if (!size || mp->state == MP_PREAMBLE) return 0;
    if (mp->fn(mp->ctx, mp->field, mp->has_filename ? mp->filename : NULL, false, data, size) == 0)
        return 0;
    fail(mp);
    return -1;
}

static void found_delim(Multipart *mp) {
    mp->state = MP_DELIM;
    mp->matched = 0;
}

/* Where in p[i, n) the first delimiter starts, whole or cut by the end
 * of p (n for none); *m gets how many of its bytes p holds. */
static size_t find_delim(const Multipart *mp, const char *p, size_t i, size_t n, size_t *m) {
    const char *hit = memmem(p + i, n - i, mp->delim, mp->delim_len);
    if (hit) {
        *m = mp->delim_len;
        return (size_t)(hit - p);
    }
    if (n - i >= mp->delim_len) i = n - mp->delim_len + 1; /* a start, in the tail */
    for (;;) {
        const char *cr = memchr(p + i, '\r', n - i);
        if (!cr) break;
        size_t at = (size_t)(cr - p), k = 1;
        while (at + k < n && k < mp->delim_len && p[at + k] == mp->delim[k]) k++;
        if (at + k == n) {
            *m = k;
            return at;
        }
        i = at + k; /* p[at + 1 .. at + k) are not CR */
    }
    *m = 0;
    return n;
}

/* Preamble or content up to a delimiter: the bytes taken of p. */
static size_t scan(Multipart *mp, const char *p, size_t n) {
    size_t i = 0;
    if (mp->matched) { /* a delimiter begun by the last piece */
        while (i < n && mp->matched < mp->delim_len && p[i] == mp->delim[mp->matched])
            i++, mp->matched++;
        if (mp->matched == mp->delim_len) {
            found_delim(mp);
            return i;
        }
        if (i == n) return n;
        size_t held = mp->matched; /* it was content; p[i] may begin another */
        mp->matched = 0;
        if (deliver(mp, mp->delim, held) != 0) return i;
    }
    size_t m, at = find_delim(mp, p, i, n, &m);
    if (deliver(mp, p + i, at - i) != 0) return at;
    if (m == mp->delim_len)
        found_delim(mp);
    else
        mp->matched = m;
    return at + m;
}

static void begin_headers(Multipart *mp) {
    mp->state = MP_HEADERS;
    mp->head_len = mp->line_len = 0;
    mp->has_disposition = mp->has_name = mp->has_filename = false;
    mp->field[0] = mp->filename[0] = '\0';
}

/* One byte of what follows a delimiter, up to the line end. */
static void after_delim(Multipart *mp, char c) {
    if (mp->state == MP_DASH) {
        mp->state = c == '-' ? MP_EPILOGUE : MP_FAILED;
    } else if (c == '-' && mp->state == MP_DELIM) {
        mp->state = MP_DASH;
    } else if (is_space(c) && mp->state != MP_CR) {
        mp->state = MP_PADDING;
    } else if (c == '\r' && mp->state != MP_CR) {
        mp->state = MP_CR;
    } else if (c == '\n') {
        begin_headers(mp);
    } else {
        fail(mp);
    }
}

/* Content-Disposition's value: form-data, name=, filename=. 0 or -1. */
static int disposition(Multipart *mp, const char *s) {
    if (mp->has_disposition) return -1;
    mp->has_disposition = true;
    s = skip_space(s);
    const char *type = s, *name;
    while (*s && *s != ';' && !is_space(*s)) s++;
    if (!name_is(type, (size_t)(s - type), "form-data")) return -1;
    size_t len;
    int r;
    while ((r = param_name(&s, &name, &len)) != 0) {
        if (r < 0) return -1;
        char *out = NULL;
        size_t cap = 0;
        if (name_is(name, len, "name")) {
            if (mp->has_name) return -1;
            mp->has_name = true;
            out = mp->field, cap = sizeof mp->field;
        } else if (name_is(name, len, "filename")) {
            if (mp->has_filename) return -1;
            mp->has_filename = true;
            out = mp->filename, cap = sizeof mp->filename;
        }
        if (param_value(&s, out, cap) != 0) return -1;
    }
    return 0;
}

/* One header line, its line end cut off: 0 or -1. */
static int header_line(Multipart *mp, const char *line, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f) return -1;
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line) return -1;
    for (const char *p = line; p < colon; p++) /* also refuses folded lines */
        if (is_space(*p)) return -1;
    if (name_is(line, (size_t)(colon - line), "Content-Disposition"))
        return disposition(mp, colon + 1);
    return 0;
}

/* The blank line: the part starts, its first piece empty. */
static void end_headers(Multipart *mp) {
    if (!mp->has_name) {
        fail(mp);
        return;
    }
    mp->state = MP_CONTENT;
    mp->matched = 0;
    if (mp->fn(mp->ctx, mp->field, mp->has_filename ? mp->filename : NULL, true, "", 0) != 0)
        fail(mp);
}

/* The header block, a line at a time: the bytes taken of p. */
static size_t headers(Multipart *mp, const char *p, size_t n) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    if (mp->head_len + take + (nl != NULL) > MULTIPART_HEADERS_MAX) {
        fail(mp);
        return n;
    }
    memcpy(mp->line + mp->line_len, p, take);
    mp->line_len += take;
    mp->head_len += take;
    if (!nl) return n;
    mp->head_len++;
    size_t len = mp->line_len;
    if (len && mp->line[len - 1] == '\r') len--;
    mp->line[len] = '\0';
    mp->line_len = 0;
    if (!len)
        end_headers(mp);
    else if (header_line(mp, mp->line, len) != 0)
        fail(mp);
    return take + 1;
}

int multipart_feed(Multipart *mp, const char *data, size_t size) {
    size_t i = 0;
    while (i < size && mp->state != MP_FAILED) {
        switch (mp->state) {
        case MP_PREAMBLE:
        case MP_CONTENT: i += scan(mp, data + i, size - i); break;
        case MP_HEADERS: i += headers(mp, data + i, size - i); break;
        case MP_EPILOGUE: i = size; break;
        default: after_delim(mp, data[i++]); break;
        }
    }
    return mp->state == MP_FAILED ? -1 : 0;
}

int multipart_end(Multipart *mp) {
    if (!mp) return -1;
    int ok = mp->state == MP_EPILOGUE ? 0 : -1;
    free(mp);
    return ok;
}
