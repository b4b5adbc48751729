/* streams.cpp - the simulated device's streams, events and graphs.
 *
 * A stream is a queue of work and a count of what has run. The legacy
 * default stream waits for every blocking stream's work queued before,
 * and they for its (CUDA's implicit synchronisation); non-blocking
 * streams wait only for the events they are told to. Nothing runs until
 * the host waits for it (device.h), or a stream holds more than
 * QUEUE_MAX items, as a GPU's launch queue fills. An event marks a
 * stream's position. A capturing stream appends to its graph instead; a
 * stream that waits on an event recorded in a capture joins it (a fork),
 * and must be joined back: the origin stream waits on an event recorded
 * after its last work (only joins into the origin are counted). A
 * graph's replay is one item that runs the recorded work in order.
 * A stream destroyed is only retired, since marks may name it.
 *
 * Work that waits on other processes (NCCL's all-reduces) is polled: it
 * goes on as far as it can and says whether it has finished, and the
 * stream's later work waits behind it. A host that waits for it polls
 * until it finishes (for ever, as a GPU's kernel waits for a peer that
 * never comes); a query does not wait.
 */
#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "tests/sim/cuda_sim.h"
#include "tests/sim/device/device.h"

namespace {

const size_t QUEUE_MAX = 1024;

struct Mark { /* the point after the stream's seq-th item ran */
    SimStream *stream;
    uint64_t seq;
};

struct Item {
    std::function<bool()> work; /* whether it has finished; empty for a wait on an event */
    std::vector<Mark> after;
};

/* A graph's recorded item: work that runs at once, or polled work (made
 * afresh for each replay, since it keeps how far it got). */
struct Step {
    std::function<void()> work;
    SimPolledMaker make;
};

using Work = std::vector<Step>;

} // namespace

/* A capture: its origin stream's, and that of the streams forked from it
 * (a stream that waits on an event recorded in the capture joins it, as
 * CUDA's do). Their work is recorded in the order the host issues it,
 * which keeps every event's order. */
struct SimGraph {
    Work work;
    SimStream *origin = nullptr;
    bool invalidated = false;
    std::vector<std::shared_ptr<const void>> held; /* simdev_capture_hold's */
};

struct SimGraphExec {
    std::shared_ptr<const Work> work; /* shared with replays still queued */
    std::vector<std::shared_ptr<const void>> held; /* its graph's, till destroyed */
};

struct SimStream {
    bool blocking = true;
    std::deque<Item> queue;
    uint64_t queued = 0, done = 0;
    SimGraph *capture = nullptr;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    std::thread::id owner;
    uint64_t recorded = 0; /* items recorded in the capture (a forked stream's) */
    uint64_t joined = 0;   /* of them, those the origin stream has waited for */
};

struct SimEvent {
    Mark mark{nullptr, 0};
    SimStream *captured_by = nullptr; /* recorded in that stream's capture */
    uint64_t captured_at = 0;         /* after that stream's first so many items */
    bool timing;
    bool queried = false;
    std::shared_ptr<double> time; /* when the record ran, seconds */
};

namespace {

SimStream legacy; /* blocking */
std::set<SimStream *> live;
thread_local cudaStreamCaptureMode thread_mode = cudaStreamCaptureModeGlobal;

SimStream *stream_of(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy) return &legacy;
    return live.count(s) ? s : nullptr;
}

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

/* Runs s's work up to its seq-th item: whether it got there, which it
 * always does when `wait` (a polled item then is polled till it ends,
 * the lock let go between polls: another thread may run s meanwhile, so
 * nothing of its queue is held across a wait). */
bool run_to(SimStream *s, uint64_t seq, bool wait = true) {
    while (s->done < seq) {
        uint64_t at = s->done;
        if (!s->queue.front().after.empty()) {
            std::vector<Mark> after = s->queue.front().after;
            for (const Mark &m : after)
                if (!run_to(m.stream, m.seq, wait)) return false;
            if (s->done != at) continue; /* another thread ran it */
        }
        Item &item = s->queue.front();
        if (!item.work || item.work()) {
            s->queue.pop_front();
            s->done++;
            continue;
        }
        if (!wait) return false;
        simdev_lock().released([] { std::this_thread::sleep_for(std::chrono::microseconds(50)); });
    }
    return true;
}

/* queues an item on s, after what it must wait for: the mark of an event
 * it is told to wait on, and CUDA's implicit ordering of blocking streams */
cudaError_t enqueue_polled(SimStream *s, std::function<bool()> work, const Mark *wait) {
    Item item{std::move(work), {}};
    if (wait) item.after.push_back(*wait);
    if (s == &legacy) {
        for (SimStream *o : live)
            if (o->blocking && o->queued > o->done) item.after.push_back({o, o->queued});
    } else if (s->blocking && legacy.queued > legacy.done) {
        item.after.push_back({&legacy, legacy.queued});
    }
    s->queue.push_back(std::move(item));
    s->queued++;
    if (s->queue.size() > QUEUE_MAX) run_to(s, s->done + QUEUE_MAX / 2);
    return cudaSuccess;
}

/* a step recorded in s's capture */
cudaError_t record(SimStream *s, Step step) {
    s->capture->work.push_back(std::move(step));
    s->recorded++;
    return cudaSuccess;
}

cudaError_t enqueue(SimStream *s, std::function<void()> work, const Mark *wait) {
    if (s->capture) return work ? record(s, Step{std::move(work), nullptr}) : cudaSuccess;
    std::function<bool()> finishes;
    if (work) finishes = [work = std::move(work)] {
        work();
        return true;
    };
    return enqueue_polled(s, std::move(finishes), wait);
}

} // namespace

std::set<const void *> &simdev_kept() {
    static std::set<const void *> &kept = *new std::set<const void *>;
    return kept;
}

thread_local int SimLock::depth = 0;

SimLock &simdev_lock() {
    static SimLock lock;
    return lock;
}

cudaError_t simdev_enqueue(cudaStream_t stream, std::function<void()> work) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s) return simdev_fail(cudaErrorInvalidResourceHandle);
    return enqueue(s, std::move(work), nullptr);
}

cudaError_t simdev_enqueue_polled(cudaStream_t stream, SimPolledMaker make) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s) return simdev_fail(cudaErrorInvalidResourceHandle);
    if (s->capture) return record(s, Step{nullptr, std::move(make)});
    return enqueue_polled(s, make(), nullptr);
}

cudaError_t simdev_drain(cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s) return simdev_fail(cudaErrorInvalidResourceHandle);
    if (s->capture) { /* waiting for a capture's work: it fails */
        s->capture->invalidated = true;
        return simdev_fail(cudaErrorStreamCaptureUnsupported);
    }
    run_to(s, s->queued);
    return cudaSuccess;
}

void simdev_drain_all() {
    std::lock_guard<SimLock> g(simdev_lock());
    run_to(&legacy, legacy.queued);
    std::vector<SimStream *> all(live.begin(), live.end()); /* the waits let others in */
    for (SimStream *s : all) run_to(s, s->queued);
}

bool simdev_capturing(cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    return s && s->capture;
}

void simdev_capture_hold(cudaStream_t stream, std::shared_ptr<const void> held) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s || !s->capture) return;
    std::vector<std::shared_ptr<const void>> &in = s->capture->held;
    if (std::find(in.begin(), in.end(), held) == in.end()) in.push_back(std::move(held));
}

bool simdev_capture_refuses() {
    std::lock_guard<SimLock> g(simdev_lock());
    if (thread_mode == cudaStreamCaptureModeRelaxed) return false;
    bool refused = false;
    for (SimStream *s : live) {
        if (!s->capture || s->mode == cudaStreamCaptureModeRelaxed) continue;
        bool mine = s->owner == std::this_thread::get_id();
        if (mine || (thread_mode == cudaStreamCaptureModeGlobal &&
                     s->mode == cudaStreamCaptureModeGlobal)) {
            s->capture->invalidated = true;
            refused = true;
        }
    }
    return refused;
}

/* what tests/sim/cuda_sim.h hands a launch to */
void sim_launch(cudaStream_t stream, std::function<void()> work) {
    simdev_enqueue(stream, std::move(work));
}

/* ---- streams ---- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = simdev_keep(new SimStream); /* never dropped: marks may name it */
    s->blocking = !(flags & cudaStreamNonBlocking);
    live.insert(s);
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream); /* the legacy stream is not destroyed */
    if (!s || s == &legacy || s->capture) return simdev_fail(cudaErrorInvalidResourceHandle);
    run_to(s, s->queued); /* CUDA lets queued work finish */
    live.erase(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (simdev_capture_refuses()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    return simdev_drain(stream);
}

bool simdev_device_wait_refused() {
    std::lock_guard<SimLock> g(simdev_lock());
    bool capturing = simdev_capture_refuses();
    for (SimStream *s : live)
        if (s->capture && s->mode != cudaStreamCaptureModeRelaxed)
            capturing = s->capture->invalidated = true;
    return capturing;
}

/* refused while any stream captures, whatever its thread: CUDA forbids
 * waiting for a device one of whose streams captures */
cudaError_t cudaDeviceSynchronize(void) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_device_wait_refused()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    simdev_drain_all();
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s) return simdev_fail(cudaErrorInvalidResourceHandle);
    if (s == &legacy || s->capture) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    s->capture = simdev_keep(new SimGraph);
    s->capture->origin = s;
    s->mode = mode;
    s->owner = std::this_thread::get_id();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    *graph = nullptr;
    if (!s || !s->capture) return simdev_fail(cudaErrorInvalidValue);
    if (s->capture->origin != s) return simdev_fail(cudaErrorStreamCaptureUnmatched);
    if (s->mode != cudaStreamCaptureModeRelaxed && s->owner != std::this_thread::get_id())
        return simdev_fail(cudaErrorStreamCaptureWrongThread);
    SimGraph *made = s->capture;
    bool unjoined = false; /* a fork whose last work the origin never waited for */
    for (SimStream *o : live)
        if (o->capture == made) {
            unjoined |= o != s && o->joined < o->recorded;
            o->capture = nullptr;
            o->recorded = o->joined = 0;
        }
    if (made->invalidated || unjoined) {
        cudaError_t e = made->invalidated ? cudaErrorStreamCaptureInvalidated
                                          : cudaErrorStreamCaptureUnjoined;
        simdev_drop(made);
        return simdev_fail(e);
    }
    *graph = made;
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode) {
    std::swap(thread_mode, *mode);
    return cudaSuccess;
}

/* ---- events ---- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimEvent *e = simdev_keep(new SimEvent);
    e->timing = !(flags & cudaEventDisableTiming);
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) {
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(event)) return simdev_fail(cudaErrorInvalidResourceHandle);
    simdev_drop(event); /* a record still queued writes its own time */
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    SimStream *s = stream_of(stream);
    if (!s || !simdev_kept_now(event)) return simdev_fail(cudaErrorInvalidResourceHandle);
    SimEvent *e = event;
    if (s->capture) { /* a point of the graph: only the capture's streams wait on it */
        e->captured_by = s;
        e->captured_at = s->recorded;
        e->mark = {nullptr, 0};
        return cudaSuccess;
    }
    e->captured_by = nullptr;
    e->queried = false;
    auto time = std::make_shared<double>(0);
    e->time = time;
    e->mark = {s, s->queued + 1}; /* the record's: a full queue lets other threads in */
    enqueue(s, [time] { *time = now_s(); }, nullptr);
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
    std::lock_guard<SimLock> g(simdev_lock());
    (void)flags;
    SimStream *s = stream_of(stream);
    if (!s || !simdev_kept_now(event)) return simdev_fail(cudaErrorInvalidResourceHandle);
    SimStream *at = event->captured_by; /* recorded there, in a capture */
    SimGraph *graph = at ? at->capture : nullptr;
    if (at && !graph) return simdev_fail(cudaErrorStreamCaptureIsolation); /* that capture ended */
    if (s->capture) { /* inside a capture: only its own points */
        if (graph != s->capture) {
            s->capture->invalidated = true;
            return simdev_fail(cudaErrorStreamCaptureIsolation);
        }
        if (s == graph->origin && at != s) at->joined = std::max(at->joined, event->captured_at);
        return cudaSuccess;
    }
    if (graph) { /* a fork: s records into the capture from here on */
        if (s == &legacy) { /* which cannot capture */
            graph->invalidated = true;
            return simdev_fail(cudaErrorStreamCaptureIsolation);
        }
        s->capture = graph;
        s->mode = graph->origin->mode;
        s->owner = graph->origin->owner;
        s->recorded = s->joined = 0;
        return cudaSuccess;
    }
    if (!event->mark.stream) return cudaSuccess; /* never recorded: nothing to wait for */
    return enqueue(s, nullptr, &event->mark);
}

/* A first query of work not yet run says so; the next runs it, so that a
 * host polling an event sees both answers and is not left waiting, unless
 * polled work cannot finish yet. */
cudaError_t cudaEventQuery(cudaEvent_t event) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(event)) return simdev_fail(cudaErrorInvalidResourceHandle);
    if (simdev_capture_refuses()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    if (event->captured_by) return simdev_fail(cudaErrorStreamCaptureIsolation);
    Mark m = event->mark;
    if (!m.stream || m.stream->done >= m.seq) return cudaSuccess;
    if (!event->queried) {
        event->queried = true;
        return cudaErrorNotReady; /* not an error: not sticky */
    }
    return run_to(m.stream, m.seq, false) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(event)) return simdev_fail(cudaErrorInvalidResourceHandle);
    if (simdev_capture_refuses()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    if (event->captured_by) return simdev_fail(cudaErrorStreamCaptureIsolation);
    if (event->mark.stream) run_to(event->mark.stream, event->mark.seq);
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(start) || !simdev_kept_now(end) || !start->timing || !end->timing ||
        !start->mark.stream || !end->mark.stream)
        return simdev_fail(cudaErrorInvalidResourceHandle);
    if (start->mark.stream->done < start->mark.seq || end->mark.stream->done < end->mark.seq)
        return cudaErrorNotReady;
    *ms = (float)((*end->time - *start->time) * 1e3);
    return cudaSuccess;
}

/* ---- graphs ---- */

namespace {

/* A replay of work: its steps in order, a polled one till it ends. */
SimPolled replay(std::shared_ptr<const Work> work) {
    struct At {
        size_t next = 0;
        SimPolled polled; /* the step at next's, once made */
    };
    auto at = std::make_shared<At>();
    return [work, at] {
        for (; at->next < work->size(); at->next++) {
            const Step &step = (*work)[at->next];
            if (step.work) {
                step.work();
                continue;
            }
            if (!at->polled) at->polled = step.make();
            if (!at->polled()) return false;
            at->polled = nullptr;
        }
        return true;
    };
}

} // namespace

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
    std::lock_guard<SimLock> g(simdev_lock());
    (void)flags;
    if (!simdev_kept_now(graph)) return simdev_fail(cudaErrorInvalidResourceHandle);
    *exec = simdev_keep(new SimGraphExec{std::make_shared<const Work>(graph->work), graph->held});
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(exec)) return simdev_fail(cudaErrorInvalidResourceHandle);
    std::shared_ptr<const Work> work = exec->work;
    return simdev_enqueue_polled(stream, [work] { return replay(work); });
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(exec)) return simdev_fail(cudaErrorInvalidResourceHandle);
    simdev_drop(exec);
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!simdev_kept_now(graph)) return simdev_fail(cudaErrorInvalidResourceHandle);
    simdev_drop(graph);
    return cudaSuccess;
}
