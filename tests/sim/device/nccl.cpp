/* nccl.cpp - NCCL on the simulated device: communicators of one rank per
 * process, its ranks the processes of one machine (mpirun's), which meet
 * in a shared memory segment named by the unique id.
 *
 * An all-reduce is polled work on the caller's stream (device.h), so it
 * orders as NCCL's kernel does and waits for its peers as that kernel
 * does: a host that waits for the sums blocks until every rank has come;
 * one that queries an event after them (the watchdog, gpu/nccl.cu) hears
 * "not ready" and can give up. The sums go in rounds of SLOT_BYTES a
 * rank: each rank posts its part in its slot, adds every rank's slot in
 * rank order (so that every rank gets the same bits), then says it has
 * read them, before its slot takes the next round's part.
 *
 * As NCCL's, init refuses two ranks on one device of a machine (a host
 * NCCL_HOSTID names, else the host's name). A rank whose process is gone
 * or stopped leaves its peers waiting, as NCCL's peers wait; destroying
 * or aborting a communicator that a CUDA graph still holds stops the
 * process, where NCCL's would wait for ever.
 * TRAIND_SIMDEV_NCCL_STUCK_RANK=R[:N] makes rank R's all-reduces after
 * its first N (0 by default) never post, a device that hangs, for the
 * watchdog's tests; TRAIND_SIMDEV_NCCL_NO_ID=1 makes ncclGetUniqueId
 * fail, as it does without a network interface.
 */
#include <errno.h>
#include <fcntl.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "tests/sim/device/device.h"

namespace {

const int RANKS_MAX = 8;
const size_t SLOT_BYTES = (size_t)256 << 10;
const char ID_TAG[] = "traind simulated NCCL "; /* then the segment's name */
const double JOIN_TIMEOUT_S = 120;

struct Member {
    int device;
    char host[64];
};

struct Shared { /* the segment: zeroes when made */
    std::atomic<int> joined;
    Member member[RANKS_MAX];
    std::atomic<uint64_t> posted[RANKS_MAX]; /* the phases each rank has ended, 2 a round */
    unsigned char slot[RANKS_MAX][SLOT_BYTES];
};

struct Comm {
    Shared *shared = nullptr;
    int rank = 0, ranks = 0;
    uint64_t rounds = 0;      /* begun by this rank's all-reduces */
    uint64_t all_reduces = 0; /* begun */
    int64_t stuck_after = -1; /* all-reduces after which this rank's never post */
    std::atomic<bool> aborted{false};
    /* held by each graph that captured an all-reduce of this communicator
     * (simdev_capture_hold), as NCCL's graph-held resources are */
    std::shared_ptr<const void> in_graphs = std::make_shared<const int>(0);
    ~Comm() {
        if (shared) munmap(shared, sizeof *shared);
    }
};

std::string last_error; /* ncclGetLastError's, the process's as NCCL's */

/* One all-reduce in progress: where it is, as run by step(). */
struct AllReduce {
    std::shared_ptr<Comm> comm;
    const unsigned char *send;
    unsigned char *recv;
    size_t bytes, done = 0;
    bool f64;
    uint64_t round = 0;
    int phase = 0; /* 0: post the part, 1: add the parts, 2: wait till all have */
    bool begun = false;
};

bool all_posted(const Comm &c, uint64_t phases) {
    for (int r = 0; r < c.ranks; r++)
        if (c.shared->posted[r].load(std::memory_order_acquire) < phases) return false;
    return true;
}

template <typename T> void add_parts(const Comm &c, T *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        T sum = 0;
        for (int r = 0; r < c.ranks; r++) sum += ((const T *)c.shared->slot[r])[i];
        out[i] = sum;
    }
}

/* Goes on with a as far as the peers allow: whether it has ended. */
bool step(AllReduce &a) {
    Comm &c = *a.comm;
    if (c.aborted) return true; /* abandoned: the buffer holds what it holds */
    if (!a.begun) {
        if (c.stuck_after >= 0 && c.all_reduces >= (uint64_t)c.stuck_after) return false;
        a.begun = true;
        c.all_reduces++;
    }
    for (;;) {
        size_t part = std::min(SLOT_BYTES, a.bytes - a.done);
        if (a.phase == 0) {
            a.round = c.rounds++;
            memcpy(c.shared->slot[c.rank], a.send + a.done, part);
            c.shared->posted[c.rank].store(2 * a.round + 1, std::memory_order_release);
            a.phase = 1;
        }
        if (a.phase == 1) {
            if (!all_posted(c, 2 * a.round + 1)) return false;
            if (a.f64) add_parts(c, (double *)(a.recv + a.done), part / 8);
            else add_parts(c, (float *)(a.recv + a.done), part / 4);
            c.shared->posted[c.rank].store(2 * a.round + 2, std::memory_order_release);
            a.phase = 2;
        }
        if (!all_posted(c, 2 * a.round + 2)) return false;
        a.done += part;
        a.phase = 0;
        if (a.done == a.bytes) return true;
    }
}

Shared *map_segment(const char *name, int flags) {
    int fd = shm_open(name, flags, 0600);
    if (fd < 0) return nullptr;
    void *p = MAP_FAILED;
    if (!(flags & O_CREAT) || ftruncate(fd, sizeof(Shared)) == 0)
        p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? nullptr : (Shared *)p;
}

/* Waits till all ranks have joined; whether they did in time. */
bool wait_joined(const Shared *s, int ranks) {
    auto start = std::chrono::steady_clock::now();
    while (s->joined.load(std::memory_order_acquire) < ranks) {
        std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
        if (waited.count() > JOIN_TIMEOUT_S) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

/* NCCL's refusal of two ranks on one device of one machine, in its words:
 * this rank first, the device by its PCI bus id in hex (the simulated
 * cuda:d's is 0x18000 + 0x1000 d) */
bool duplicate_device(const Comm &c) {
    const Member &me = c.shared->member[c.rank];
    for (int r = 0; r < c.ranks; r++) {
        const Member &peer = c.shared->member[r];
        if (r == c.rank || peer.device != me.device || strcmp(peer.host, me.host) != 0) continue;
        char why[128];
        snprintf(why, sizeof why,
                 "Duplicate GPU detected : rank %d and rank %d both on CUDA device %lx", c.rank, r,
                 0x18000ul + 0x1000ul * (unsigned long)me.device);
        last_error = why;
        return true;
    }
    return false;
}

/* TRAIND_SIMDEV_NCCL_STUCK_RANK's N for this rank, or -1 */
int64_t stuck_after(int rank) {
    const char *v = getenv("TRAIND_SIMDEV_NCCL_STUCK_RANK");
    if (!v || !*v || atoi(v) != rank) return -1;
    const char *n = strchr(v, ':');
    return n ? atoll(n + 1) : 0;
}

} // namespace

struct SimNccl {
    std::shared_ptr<Comm> comm;
};

const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "internal error";
    }
}

const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm; /* unused, as NCCL's */
    return last_error.c_str();
}

/* Rank 0 makes the segment; the rank that joins last unlinks its name. */
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static std::atomic<int> made{0};
    if (getenv("TRAIND_SIMDEV_NCCL_NO_ID")) {
        last_error = "Bootstrap : no socket interface found";
        return ncclInvalidUsage;
    }
    char name[64];
    snprintf(name, sizeof name, "/traind-simnccl-%d-%d", (int)getpid(), made++);
    Shared *s = map_segment(name, O_RDWR | O_CREAT | O_EXCL);
    if (!s) {
        last_error = std::string("shm_open ") + name + ": " + strerror(errno);
        return ncclSystemError;
    }
    munmap(s, sizeof *s);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s%s", ID_TAG, name);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
    *out = nullptr;
    size_t tag = strlen(ID_TAG);
    if (strncmp(id.internal, ID_TAG, tag) != 0) return ncclInvalidArgument;
    if (nranks < 1 || nranks > RANKS_MAX || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    auto c = std::make_shared<Comm>();
    c->rank = rank, c->ranks = nranks, c->stuck_after = stuck_after(rank);
    if (!(c->shared = map_segment(id.internal + tag, O_RDWR))) {
        last_error = std::string("shm_open ") + (id.internal + tag) + ": " + strerror(errno);
        return ncclSystemError;
    }
    Member &me = c->shared->member[rank];
    me.device = simdev_current_device();
    const char *host = getenv("NCCL_HOSTID"); /* NCCL's host hash takes it for the name */
    if (host) snprintf(me.host, sizeof me.host, "%s", host);
    else gethostname(me.host, sizeof me.host - 1);
    if (c->shared->joined.fetch_add(1, std::memory_order_acq_rel) + 1 == nranks)
        shm_unlink(id.internal + tag);
    if (!wait_joined(c->shared, nranks)) {
        last_error = "not every rank joined in " + std::to_string((int)JOIN_TIMEOUT_S) + " s";
        return ncclSystemError;
    }
    if (duplicate_device(*c)) return ncclInvalidUsage;
    *out = simdev_keep(new SimNccl{c});
    return ncclSuccess;
}

/* NCCL 2.26 and later: destroying or aborting a communicator waits, for
 * ever, until no CUDA graph holds it (a graph that captured one of its
 * collectives, or an executable graph made from one). A hang here stops
 * the process loudly instead. */
static void refuse_held_by_graphs(const SimNccl *comm, const char *call) {
    long graphs = comm->comm->in_graphs.use_count() - 1;
    if (graphs == 0) return;
    fprintf(stderr,
            "simdev: %s would wait for ever: %ld CUDA graph(s) holding the communicator "
            "(its collectives captured) not destroyed; NCCL waits for them\n",
            call, graphs);
    abort();
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!simdev_kept_now(comm)) return ncclInvalidArgument;
    refuse_held_by_graphs(comm, "ncclCommDestroy");
    simdev_drop(comm); /* an all-reduce still queued keeps its Comm */
    return ncclSuccess;
}

/* Ends the communicator's all-reduces where they are: a stream whose
 * all-reduce waits for a rank that will not come goes on. */
ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!simdev_kept_now(comm)) return ncclInvalidArgument;
    comm->comm->aborted = true;
    refuse_held_by_graphs(comm, "ncclCommAbort");
    simdev_drop(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
    *async = ncclSuccess; /* peers are waited for, not watched: see above */
    return simdev_kept_now(comm) ? ncclSuccess : ncclInvalidArgument;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    size_t bytes = count * (type == ncclFloat64 ? 8 : 4);
    if (!simdev_kept_now(comm) || op != ncclSum || !simdev_on_device(send, bytes) ||
        !simdev_on_device(recv, bytes))
        return ncclInvalidArgument;
    if (bytes == 0) return ncclSuccess;
    AllReduce start{comm->comm, (const unsigned char *)send, (unsigned char *)recv, bytes, 0,
                    type == ncclFloat64};
    simdev_capture_hold(stream, comm->comm->in_graphs);
    cudaError_t e = simdev_enqueue_polled(stream, [start]() -> SimPolled {
        auto a = std::make_shared<AllReduce>(start); /* each replay's own */
        return [a] { return step(*a); };
    });
    return e == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}
