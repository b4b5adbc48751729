/* group.c - the helpers over a DistGroup's table; see group.h. */
#include "core/dist/group.h"

#include <string.h>

#include "core/error.h"

bool dist_active(const DistGroup *g) {
    return g && (g->world > 1 || g->always);
}

int dist_rank(const DistGroup *g) {
    return g ? g->rank : 0;
}

int dist_world(const DistGroup *g) {
    return g ? g->world : 1;
}

int dist_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype) {
    if (!dist_active(g) || count == 0) return 0;
    return g->all_reduce(g, buf, count, dtype);
}

int dist_broadcast(DistGroup *g, void *buf, int64_t bytes, int root) {
    if (!dist_active(g) || bytes == 0) return 0;
    return g->broadcast(g, buf, bytes, root);
}

int dist_broadcast_tensor(DistGroup *g, Tensor *t, int root) {
    if (!dist_active(g)) return 0;
    /* in place when t is contiguous host memory, else through a copy */
    Tensor *host = tensor_host_contiguous(t);
    if (!host) return -1;
    int64_t bytes = tensor_numel(host) * (int64_t)dtype_size(host->dtype);
    int rc = dist_broadcast(g, tensor_data(host), bytes, root);
    if (rc == 0 && host != t) rc = tensor_copy_(t, host);
    tensor_release(host);
    return rc;
}

DistRows dist_rows_of(int64_t total, int rank, int world) {
    if (world < 1) world = 1;
    return (DistRows){rank, world, total};
}

int64_t dist_rows_count(const DistRows *r) {
    if (r->first >= r->total) return 0;
    return (r->total - r->first + r->stride - 1) / r->stride;
}
