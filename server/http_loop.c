/* http_loop.c - the workers, accepting and the connection caps; see
 * http_loop.h. */
#include "server/http_loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "server/log.h"

#define EVENTS_MAX 64
#define STOP_GRACE_S 0.3 /* for responses in flight and streams' last chunk */
#define IP_BUCKETS 1024

/* A connection as its worker holds it. */
typedef struct Slot {
    HttpConn *conn;
    unsigned interest;
    unsigned char addr[16]; /* the client's address (IPv4 mapped), for the per-address count */
    struct Slot *prev, *next;
} Slot;

/* Connections per client address. */
typedef struct IpCount {
    unsigned char addr[16];
    int count;
    struct IpCount *next;
} IpCount;

typedef struct {
    HttpLoop *loop;
    int epoll_fd, wake_fd;
    pthread_t thread;
    bool started;
    Slot *slots;
    double accept_paused_until; /* out of descriptors: the listening socket unwatched till then */
    double accept_paused_said;  /* when the log last said so (once a minute at most) */
} Worker;

struct HttpLoop {
    HttpLoopConfig cfg;
    atomic_bool stopping;
    atomic_int connections;
    pthread_mutex_t ip_lock;
    IpCount *ips[IP_BUCKETS];
    int num_workers;
    Worker *workers;
};

/* ---- the caps ---- */

static unsigned ip_bucket(const unsigned char *addr) {
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ addr[i]) * 16777619u;
    return h % IP_BUCKETS;
}

/* Counts a connection from addr: false (not counted) past the caps. */
static bool caps_admit(HttpLoop *l, const unsigned char *addr) {
    if (atomic_fetch_add(&l->connections, 1) >= l->cfg.max_connections) {
        atomic_fetch_sub(&l->connections, 1);
        return false;
    }
    pthread_mutex_lock(&l->ip_lock);
    IpCount **pp = &l->ips[ip_bucket(addr)];
    while (*pp && memcmp((*pp)->addr, addr, 16) != 0) pp = &(*pp)->next;
    if (!*pp && (*pp = calloc(1, sizeof **pp))) memcpy((*pp)->addr, addr, 16);
    bool ok = *pp && (*pp)->count < l->cfg.max_per_ip;
    if (ok) (*pp)->count++;
    pthread_mutex_unlock(&l->ip_lock);
    if (!ok) atomic_fetch_sub(&l->connections, 1);
    return ok;
}

static void caps_release(HttpLoop *l, const unsigned char *addr) {
    pthread_mutex_lock(&l->ip_lock);
    IpCount **pp = &l->ips[ip_bucket(addr)];
    while (*pp && memcmp((*pp)->addr, addr, 16) != 0) pp = &(*pp)->next;
    if (*pp && --(*pp)->count == 0) {
        IpCount *gone = *pp;
        *pp = gone->next;
        free(gone);
    }
    pthread_mutex_unlock(&l->ip_lock);
    atomic_fetch_sub(&l->connections, 1);
}

/* The 16 bytes of a client's address (IPv4 as ::ffff:a.b.c.d). */
static void address_key(const struct sockaddr_storage *sa, unsigned char *key) {
    memset(key, 0, 16);
    if (sa->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else if (sa->ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

/* ---- a worker's connections ---- */

static uint32_t epoll_events(unsigned interest) {
    uint32_t ev = 0;
    if (interest & HTTP_CONN_READ) ev |= EPOLLIN | EPOLLRDHUP;
    if (interest & HTTP_CONN_WRITE) ev |= EPOLLOUT;
    if (!interest) ev |= EPOLLRDHUP; /* a waiting stream: only whether its client leaves */
    return ev;
}

static void slot_close(Worker *w, Slot *s, HttpEnd how) {
    int fd = http_conn_fd(s->conn);
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    http_conn_free(s->conn, how);
    caps_release(w->loop, s->addr);
    if (s->prev) s->prev->next = s->next;
    else w->slots = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

/* Applies what the connection now waits for. */
static void slot_settle(Worker *w, Slot *s, unsigned interest) {
    if (interest & HTTP_CONN_CLOSE) {
        slot_close(w, s, HTTP_END_SHUTDOWN);
        return;
    }
    if (interest == s->interest) return;
    struct epoll_event ev = {.events = epoll_events(interest), .data.ptr = s};
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, http_conn_fd(s->conn), &ev) != 0) {
        slot_close(w, s, HTTP_END_ERROR);
        return;
    }
    s->interest = interest;
}

/* A connection accepted on fd: counted, given its state and watched. */
static void slot_open(Worker *w, int fd, const struct sockaddr_storage *sa, double now) {
    HttpLoop *l = w->loop;
    unsigned char key[16];
    address_key(sa, key);
    if (!caps_admit(l, key)) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Slot *s = calloc(1, sizeof *s);
    HttpTls *tls = NULL;
    if (!s || (l->cfg.tls && !(tls = http_tls_new(l->cfg.tls, fd)))) {
        free(s);
        close(fd);
        caps_release(l, key);
        return;
    }
    /* the connection takes fd and tls, also when it cannot be made */
    HttpConn *conn = http_conn_new(fd, tls, &l->cfg.events, &l->cfg.times, &l->stopping, now);
    struct epoll_event ev = {.events = epoll_events(HTTP_CONN_READ), .data.ptr = s};
    if (!conn || epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        http_conn_free(conn, HTTP_END_ERROR);
        free(s);
        caps_release(l, key);
        return;
    }
    *s = (Slot){.conn = conn, .interest = HTTP_CONN_READ, .next = w->slots};
    memcpy(s->addr, key, 16);
    if (w->slots) w->slots->prev = s;
    w->slots = s;
}

static void slot_ready(Worker *w, Slot *s, uint32_t events, double now) {
    bool hangup = events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR);
    slot_settle(w, s, http_conn_io(s->conn, hangup, now));
}

static int watch_listening(Worker *w) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    return epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->loop->cfg.listen_fd, &ev);
}

/* Out of descriptors: the waiting connection stays in the backlog, and
 * the listening socket, still readable, would wake this worker at once
 * again and again; it is unwatched for a moment instead (a tick), while
 * the open connections finish and give theirs back. */
static void pause_accepting(Worker *w, double now) {
    if (w->accept_paused_until > 0) return;
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->loop->cfg.listen_fd, NULL);
    w->accept_paused_until = now + HTTP_TICK_MS / 1000.0;
    if (w->accept_paused_said > 0 && now - w->accept_paused_said < 60) return;
    w->accept_paused_said = now;
    log_message("http", "out of file descriptors (%s): new connections wait in the backlog; "
                "raise the file limit (ulimit -n) or lower --max-connections", strerror(errno));
}

static void resume_accepting(Worker *w, double now) {
    if (w->accept_paused_until == 0 || now < w->accept_paused_until) return;
    if (watch_listening(w) == 0) w->accept_paused_until = 0;
}

static void accept_all(Worker *w, double now) {
    for (int i = 0; i < EVENTS_MAX; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(w->loop->cfg.listen_fd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) pause_accepting(w, now);
            return; /* none left (the next wake retries) */
        }
        slot_open(w, fd, &sa, now);
    }
}

/* Each tick: the deadlines (the connections they close are logged, a
 * line a tick at most, not one per connection of a flood). */
static void tick_all(Worker *w, double now) {
    int late = 0;
    for (Slot *s = w->slots, *next; s; s = next) {
        next = s->next;
        unsigned interest = http_conn_tick(s->conn, now);
        late += (interest & HTTP_CONN_CLOSE) && http_conn_end(s->conn) == HTTP_END_TIMEOUT;
        slot_settle(w, s, interest);
    }
    if (late && !atomic_load(&w->loop->stopping))
        log_message("http", "closed %d connection(s) past a deadline: a request head over %g s, "
                    "or no byte moving for %g s", late, w->loop->cfg.times.header_timeout,
                    w->loop->cfg.times.idle_timeout);
}

/* Once the loop stops: the streams end and the idle connections close on
 * the next ticks; what is left after STOP_GRACE_S is closed. */
static void worker_drain(Worker *w) {
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->loop->cfg.listen_fd, NULL);
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->wake_fd, NULL);
    double until = clock_now_s() + STOP_GRACE_S;
    while (w->slots && clock_now_s() < until) {
        struct epoll_event evs[EVENTS_MAX];
        int n = epoll_wait(w->epoll_fd, evs, EVENTS_MAX, 20);
        double now = clock_now_s();
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr && evs[i].data.ptr != w) slot_ready(w, evs[i].data.ptr, evs[i].events, now);
        tick_all(w, now);
    }
    while (w->slots) slot_close(w, w->slots, HTTP_END_SHUTDOWN);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    HttpLoop *l = w->loop;
    double last_tick = clock_now_s();
    while (!atomic_load(&l->stopping)) {
        struct epoll_event evs[EVENTS_MAX];
        int n = epoll_wait(w->epoll_fd, evs, EVENTS_MAX, HTTP_TICK_MS);
        double now = clock_now_s();
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (!p) {
                accept_all(w, now);
            } else if (p != w) { /* the wake descriptor only ends the wait */
                slot_ready(w, p, evs[i].events, now);
            }
        }
        if (now - last_tick >= HTTP_TICK_MS / 1000.0) {
            tick_all(w, now);
            resume_accepting(w, now);
            last_tick = now;
        }
    }
    worker_drain(w);
    return NULL;
}

/* ---- start and stop ---- */

static int worker_init(HttpLoop *l, Worker *w) {
    w->loop = l;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epoll_fd < 0 || w->wake_fd < 0) return error_set("http: %s", strerror(errno));
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.ptr = w};
    if (watch_listening(w) != 0 ||
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->wake_fd, &wake_ev) != 0)
        return error_set("http: cannot watch the sockets: %s", strerror(errno));
    return 0;
}

static void loop_free(HttpLoop *l) {
    for (int i = 0; i < l->num_workers; i++) {
        if (l->workers[i].epoll_fd >= 0) close(l->workers[i].epoll_fd);
        if (l->workers[i].wake_fd >= 0) close(l->workers[i].wake_fd);
    }
    for (int b = 0; b < IP_BUCKETS; b++)
        while (l->ips[b]) {
            IpCount *gone = l->ips[b];
            l->ips[b] = gone->next;
            free(gone);
        }
    close(l->cfg.listen_fd);
    pthread_mutex_destroy(&l->ip_lock);
    free(l->workers);
    free(l);
}

HttpLoop *http_loop_start(const HttpLoopConfig *config) {
    HttpLoop *l = calloc(1, sizeof *l);
    Worker *workers = calloc((size_t)config->threads, sizeof *workers);
    if (!l || !workers) {
        free(l);
        free(workers);
        close(config->listen_fd);
        error_set("http: out of memory");
        return NULL;
    }
    l->cfg = *config;
    l->workers = workers;
    pthread_mutex_init(&l->ip_lock, NULL);
    for (int i = 0; i < config->threads; i++) workers[i].epoll_fd = workers[i].wake_fd = -1;
    for (int i = 0; i < config->threads; i++) {
        l->num_workers = i + 1;
        if (worker_init(l, &workers[i]) != 0) break;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            error_set("http: cannot start a thread");
            break;
        }
        workers[i].started = true;
        char name[16];
        snprintf(name, sizeof name, "http-%d", i % 1000);
        pthread_setname_np(workers[i].thread, name);
    }
    if (!workers[config->threads - 1].started) {
        http_loop_stop(l);
        return NULL;
    }
    return l;
}

void http_loop_stop(HttpLoop *l) {
    if (!l) return;
    atomic_store(&l->stopping, true);
    for (int i = 0; i < l->num_workers; i++) {
        uint64_t one = 1;
        if (l->workers[i].wake_fd >= 0 && write(l->workers[i].wake_fd, &one, sizeof one) < 0) {
            /* a full counter already wakes it */
        }
    }
    for (int i = 0; i < l->num_workers; i++)
        if (l->workers[i].started) pthread_join(l->workers[i].thread, NULL);
    loop_free(l);
}
