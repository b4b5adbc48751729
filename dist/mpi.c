/* mpi.c - a DistGroup over Open MPI's MPI_COMM_WORLD; see mpi.h.
 *
 * Errors come back as return codes (MPI_ERRORS_RETURN) with MPI's own
 * message, not as MPI's default abort. Only the training thread calls MPI
 * (MPI_THREAD_FUNNELED): the loaders' prefetch threads never do.
 */
#include "dist/mpi.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct DistRequest {
    MPI_Request request;
};

static int mpi_error(int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "code %d", code);
    return error_set("MPI %s: %s", what, text);
}

static int mpi_type(DType dtype, MPI_Datatype *out) {
    switch (dtype) {
    case DTYPE_FLOAT32: *out = MPI_FLOAT; return 0;
    case DTYPE_FLOAT64: *out = MPI_DOUBLE; return 0;
    case DTYPE_INT64: *out = MPI_INT64_T; return 0;
    default: return error_set("all-reduce of %s is not supported", dtype_name(dtype));
    }
}

/* MPI counts are ints: larger buffers go in pieces. */
#define MPI_PIECE ((int64_t)1 << 30)

static int mpi_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype) {
    (void)g;
    MPI_Datatype type = MPI_DATATYPE_NULL;
    if (mpi_type(dtype, &type) != 0) return -1;
    char *p = buf;
    for (int64_t done = 0; done < count; done += MPI_PIECE) {
        int n = (int)(count - done < MPI_PIECE ? count - done : MPI_PIECE);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p + done * (int64_t)dtype_size(dtype), n, type,
                               MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "all-reduce");
    }
    return 0;
}

static int mpi_all_reduce_start(DistGroup *g, void *buf, int64_t count, DType dtype,
                                DistRequest **req) {
    (void)g;
    *req = NULL;
    MPI_Datatype type = MPI_DATATYPE_NULL;
    if (mpi_type(dtype, &type) != 0) return -1;
    if (count > MPI_PIECE)
        return error_set("an all-reduce bucket of %lld values is too large", (long long)count);
    DistRequest *r = calloc(1, sizeof *r);
    if (!r) return error_set("out of memory");
    int rc =
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, type, MPI_SUM, MPI_COMM_WORLD, &r->request);
    if (rc != MPI_SUCCESS) {
        free(r);
        return mpi_error(rc, "all-reduce");
    }
    *req = r;
    return 0;
}

static void mpi_progress(DistGroup *g, DistRequest *req) {
    (void)g;
    int done = 0;
    MPI_Test(&req->request, &done, MPI_STATUS_IGNORE);
}

static int mpi_wait(DistGroup *g, DistRequest *req) {
    (void)g;
    int rc = MPI_Wait(&req->request, MPI_STATUS_IGNORE);
    free(req);
    return rc == MPI_SUCCESS ? 0 : mpi_error(rc, "all-reduce");
}

static int mpi_broadcast(DistGroup *g, void *buf, int64_t bytes, int root) {
    (void)g;
    char *p = buf;
    for (int64_t done = 0; done < bytes; done += MPI_PIECE) {
        int n = (int)(bytes - done < MPI_PIECE ? bytes - done : MPI_PIECE);
        int rc = MPI_Bcast(p + done, n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "broadcast");
    }
    return 0;
}

static void mpi_abort(DistGroup *g, int code) {
    (void)g;
    MPI_Abort(MPI_COMM_WORLD, code);
}

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : 0;
}

int dist_mpi_launched(void) {
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK")) return 1;
    int tasks = env_int("SLURM_STEP_NUM_TASKS");
    if (tasks > 1)
        return error_set("srun started %d tasks without an MPI plugin to connect them: run "
                         "`srun --mpi=pmix traind run ...`",
                         tasks);
    return 0;
}

DistGroup *dist_mpi_open(void) {
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "init"), NULL;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    DistGroup *g = calloc(1, sizeof *g);
    if (!g) {
        MPI_Finalize();
        return error_set("out of memory"), NULL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g->world);
    g->backend = "mpi";
    g->all_reduce = mpi_all_reduce;
    g->all_reduce_start = mpi_all_reduce_start;
    g->progress = mpi_progress;
    g->wait = mpi_wait;
    g->broadcast = mpi_broadcast;
    g->abort = mpi_abort;
    return g;
}

void dist_mpi_close(DistGroup *g) {
    if (!g) return;
    free(g);
    MPI_Finalize();
}
