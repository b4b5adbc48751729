/* http_conn.c - the header deadline of each HTTP connection; see
 * http_conn.h. The connections form a list under one lock; the sweep
 * walks it a few times a second. */
#include "server/http_conn.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/clock.h"

typedef enum { CONN_HEAD, CONN_BUSY, CONN_IDLE, CONN_CUT } ConnPhase;

struct HttpConn {
    int fd;
    ConnPhase phase;
    double since;      /* CONN_HEAD: when the head began; CONN_IDLE: when it went idle */
    uint64_t received; /* CONN_IDLE: TCP bytes received when it went idle */
    HttpConn *prev, *next;
};

struct HttpConns {
    pthread_mutex_t lock;
    double header_timeout;
    HttpConn *head;
};

/* Bytes the kernel has received on fd (TCP_INFO); 0 when it cannot say. */
static uint64_t bytes_received(int fd) {
    struct tcp_info info;
    socklen_t len = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
    return info.tcpi_bytes_received;
}

HttpConns *http_conns_new(int header_timeout_s) {
    HttpConns *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    pthread_mutex_init(&cs->lock, NULL);
    cs->header_timeout = header_timeout_s;
    return cs;
}

void http_conns_free(HttpConns *cs) {
    if (!cs) return;
    pthread_mutex_destroy(&cs->lock);
    free(cs);
}

HttpConn *http_conn_open(HttpConns *cs, int fd) {
    HttpConn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->phase = CONN_HEAD;
    c->since = clock_now_s();
    pthread_mutex_lock(&cs->lock);
    c->next = cs->head;
    if (cs->head) cs->head->prev = c;
    cs->head = c;
    pthread_mutex_unlock(&cs->lock);
    return c;
}

void http_conn_close(HttpConns *cs, HttpConn *c) {
    if (!c) return;
    pthread_mutex_lock(&cs->lock);
    if (c->prev) c->prev->next = c->next;
    else cs->head = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&cs->lock);
    free(c);
}

void http_conn_busy(HttpConns *cs, HttpConn *c) {
    if (!c) return;
    pthread_mutex_lock(&cs->lock);
    if (c->phase != CONN_CUT) c->phase = CONN_BUSY;
    pthread_mutex_unlock(&cs->lock);
}

void http_conn_idle(HttpConns *cs, HttpConn *c) {
    if (!c) return;
    /* read outside the lock: a system call */
    uint64_t received = bytes_received(c->fd);
    pthread_mutex_lock(&cs->lock);
    if (c->phase != CONN_CUT) {
        c->phase = CONN_IDLE;
        c->since = clock_now_s();
        c->received = received;
    }
    pthread_mutex_unlock(&cs->lock);
}

int http_conns_sweep(HttpConns *cs) {
    int cut = 0;
    double now = clock_now_s();
    pthread_mutex_lock(&cs->lock);
    for (HttpConn *c = cs->head; c; c = c->next) {
        if (c->phase == CONN_IDLE && bytes_received(c->fd) > c->received) {
            /* the next request has begun (within the last sweep period) */
            c->phase = CONN_HEAD;
            c->since = now;
        }
        if (c->phase == CONN_HEAD && now - c->since > cs->header_timeout) {
            /* fd stays open until http_conn_close, which takes this lock */
            shutdown(c->fd, SHUT_RDWR);
            c->phase = CONN_CUT;
            cut++;
        }
    }
    pthread_mutex_unlock(&cs->lock);
    return cut;
}
