/* device.h - the simulated device's inside, shared by its files: a CUDA
 * runtime, cuBLAS, cuBLASLt, cuDNN and NCCL on the CPU, against which the
 * backend's host code (gpu/ C and CUDA files) runs unchanged in CI, its
 * kernels by tests/sim/cuda_sim.h.
 *
 * Work is deferred as a GPU defers it: a launch, copy or library call is
 * queued on its stream and runs only when the host waits for it (a
 * synchronising call, an event, a full queue), in stream order and after
 * the events it waits for. So a host that reads a result before waiting,
 * or reuses a buffer a queued copy still reads, sees what it would on a
 * GPU: stale bytes. A stream that captures a graph records instead; a
 * call a capture forbids fails it, as CUDA's does. Every call holds one
 * lock (SimLock), so the threads of a process take turns.
 */
#ifndef TRAIND_TESTS_SIM_DEVICE_DEVICE_H
#define TRAIND_TESTS_SIM_DEVICE_DEVICE_H

#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <mutex>
#include <set>

/* The lock every call of the simulated device holds (a recursive mutex
 * that knows how deep this thread holds it), so the threads of a process
 * take turns; a thread that waits for work that waits for other processes
 * lets go of it while it sleeps (released), as a thread blocked in CUDA
 * does not stop the process's other threads. */
class SimLock {
  public:
    void lock() {
        mutex.lock();
        depth++;
    }
    void unlock() {
        depth--;
        mutex.unlock();
    }
    template <typename Wait> void released(Wait wait) {
        int held = depth;
        for (int i = 0; i < held; i++) unlock();
        wait();
        for (int i = 0; i < held; i++) lock();
    }

  private:
    std::recursive_mutex mutex;
    static thread_local int depth;
};

SimLock &simdev_lock();

/* e recorded as this thread's last error (cudaGetLastError), returned */
cudaError_t simdev_fail(cudaError_t e);

/* Queues work on stream (0 and cudaStreamLegacy: the legacy default
 * stream), or records it when the stream captures a graph. */
cudaError_t simdev_enqueue(cudaStream_t stream, std::function<void()> work);
/* Work that may have to wait for other processes: each call goes on as
 * far as it can without waiting and says whether it has finished; the
 * stream's later work waits behind it (streams.cpp). Queued as make()
 * makes it; a capture records `make`, and each replay makes its own. */
using SimPolled = std::function<bool()>;
using SimPolledMaker = std::function<SimPolled()>;
cudaError_t simdev_enqueue_polled(cudaStream_t stream, SimPolledMaker make);
/* Runs what stream has queued (everything, for NULL). */
cudaError_t simdev_drain(cudaStream_t stream);
void simdev_drain_all();

/* Whether stream records into a graph now. */
bool simdev_capturing(cudaStream_t stream);
/* Where stream captures a graph, `held` kept by that graph and by every
 * graph instantiated from it until each is destroyed, as a library's
 * object retained by cudaGraphRetainUserObject (NCCL's communicator).
 * Let go of at the destroy: CUDA lets go once the replays in flight end,
 * which a replay stuck for a reason other than NCCL's never does. */
void simdev_capture_hold(cudaStream_t stream, std::shared_ptr<const void> held);

/* Whether this thread may not make a call that would synchronise now:
 * it captures a graph (not in relaxed mode), or another thread captures
 * in global mode. A refused call fails the capture, which then ends with
 * cudaErrorStreamCaptureInvalidated. */
bool simdev_capture_refuses();
/* Whether a call that waits for the whole device (cudaDeviceSynchronize,
 * cudaFree, cudaFreeHost) is refused now: any stream captures, on any
 * thread, in any mode but relaxed. Each such capture is failed: a device
 * wait from another thread ends a thread-local capture too (PyTorch's
 * allocator defers its frees while one is under way for that reason). */
bool simdev_device_wait_refused();

/* How many devices there are (TRAIND_SIMDEV_GPUS), and the thread's. */
int simdev_device_count();
int simdev_current_device();

/* Whether [p, p + bytes) lies in device memory or page-locked host memory
 * (what a kernel or a copy's device side may touch); whether it lies in
 * page-locked memory (what a copy reads or writes later, not at once). */
bool simdev_on_device(const void *p, size_t bytes);
bool simdev_page_locked(const void *p, size_t bytes);

/* x rounded to nearest even at `bits` mantissa bits (float's are 23):
 * TF32's 10 and bf16's 7, as tensor cores take float32 inputs. */
float simdev_round_mantissa(float x, int bits);

/* What the libraries hand out (handles, descriptors, events), from
 * simdev_keep until simdev_drop deletes it: a set never destroyed, so
 * that what a caller keeps for the process's life is reachable when
 * LeakSanitizer looks, after static destructors, as a real library's
 * objects are; and so that a handle already dropped can be refused. */
std::set<const void *> &simdev_kept();

template <typename T> T *simdev_keep(T *p) {
    std::lock_guard<SimLock> g(simdev_lock());
    simdev_kept().insert(p);
    return p;
}

template <typename T> bool simdev_kept_now(const T *p) {
    std::lock_guard<SimLock> g(simdev_lock());
    return p && simdev_kept().count(p);
}

template <typename T> void simdev_drop(T *p) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_kept().erase(p)) delete p;
}

#endif
