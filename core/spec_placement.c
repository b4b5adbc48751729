/* spec_placement.c - where a job's processes run: "ranks" and "nodes"
 * (data parallel) and their "bucket_cap_mb", "device", and the GPUs of a
 * job of several ranks: "gpus": N (any N of the daemon's GPUs) or "devices": ["cuda:0", ...]
 * (those GPUs), one rank per GPU, as torchrun's one process per device.
 *
 * Each rank's "cuda" is its own GPU (torch.cuda.set_device(local_rank)),
 * so "device": "cuda" with N ranks reads as "gpus": N; a single named
 * GPU ("cuda:1") cannot hold several ranks (NCCL refuses two ranks on one
 * device), and is refused with the two ways to ask instead.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/spec_json.h"

/* "ranks": the data-parallel processes an executor starts (1 to
 * MAX_RANKS), each training on batch_size / ranks of every global batch,
 * so batch_size must divide by it; "nodes": the machines they spread over
 * (Slurm's --nodes), at most one per rank, ranks a multiple of it. */
#define MAX_RANKS 1024

/* "bucket_cap_mb": the size of data parallel's gradient buckets, as
 * DDP's argument of that name (MiB, fractions allowed; 25 by default).
 * Up to MAX_BUCKET_CAP_MB: one bucket holds any model traind trains. */
#define DEFAULT_BUCKET_CAP_MB 25.0
#define MAX_BUCKET_CAP_MB 65536.0

/* "devices": distinct GPUs, one per rank, at most JOB_SPEC_MAX_DEVICES. */
static int parse_devices(JobSpec *spec, const json_t *v) {
    if (!json_is_array(v))
        return error_at("devices", "expected a list of GPUs (\"cuda:0\", ...), got %s",
                        spec_json_kind(v));
    size_t n = json_array_size(v);
    if (n == 0 || n > JOB_SPEC_MAX_DEVICES)
        return error_at("devices", "expected 1 to %d GPUs, got %zu", JOB_SPEC_MAX_DEVICES, n);
    for (size_t i = 0; i < n; i++) {
        char path[SPEC_PATH_MAX];
        spec_path_index(path, "devices", i);
        const char *name = json_string_value(json_array_get(v, i));
        Device d;
        if (!name || device_parse(name, &d) != 0 || d.type != DEVICE_CUDA)
            return error_at(path, "expected a GPU, \"cuda:N\" (ranks on the CPU: \"ranks\": N)");
        for (size_t k = 0; k < i; k++)
            if (device_equal(spec->devices[k], d))
                return error_at(path, "%s is listed twice: one rank per GPU", name);
        spec->devices[spec->num_devices++] = d;
    }
    return 0;
}

/* "ranks", when written beside "gpus" or "devices", must say the same. */
static int same_ranks(const json_t *root, int64_t ranks, int gpus, const char *key) {
    if (!json_object_get(root, "ranks") || ranks == gpus) return 0;
    return error_at("ranks", "%lld ranks, but \"%s\" gives %d GPUs: one rank per GPU",
                    (long long)ranks, key, gpus);
}

/* "gpus" or "devices" (not both; "device", if given, "auto" or "cuda"):
 * the job's GPUs, its ranks one per GPU. */
static int parse_gpus(JobSpec *spec, const json_t *root, int64_t *ranks) {
    const json_t *devices = json_object_get(root, "devices");
    const char *key = devices ? "devices" : "gpus", *device = NULL;
    int64_t gpus = 0;
    if (spec_get_int(root, "", "gpus", false, 0, 1, MAX_RANKS, &gpus) ||
        spec_get_string(root, "", "device", false, &device))
        return -1;
    if (gpus && devices)
        return error_at("devices", "give \"gpus\" (any GPUs) or \"devices\" (those), not both");
    if (device && strcmp(device, "auto") != 0 && strcmp(device, "cuda") != 0)
        return error_at(key, "asks for GPUs, but \"device\" says \"%s\": leave \"device\" out",
                        device);
    if (devices && parse_devices(spec, devices)) return -1;
    int n = devices ? spec->num_devices : (int)gpus;
    if (same_ranks(root, *ranks, n, key)) return -1;
    *ranks = n;
    spec->gpus = devices ? 0 : n;
    spec->device_auto = false;
    spec->device = devices ? spec->devices[0] : (Device){.type = DEVICE_CUDA, .index = 0};
    return 0;
}

/* "device": "auto" (default), "cpu", "cuda" or "cuda:N"; with several
 * ranks, "cuda" gives each its own GPU and a named GPU is refused. */
static int parse_device(JobSpec *spec, const json_t *root, int64_t ranks) {
    const char *d;
    if (spec_get_string(root, "", "device", false, &d)) return -1;
    spec->device_auto = !d || strcmp(d, "auto") == 0;
    if (spec->device_auto) return 0;
    if (device_parse(d, &spec->device))
        return error_at("device", "expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got \"%s\"",
                        d);
    if (ranks == 1 || spec->device.type != DEVICE_CUDA) return 0;
    if (strcmp(d, "cuda") == 0) {
        spec->gpus = (int)ranks;
        return 0;
    }
    return error_at("device", "\"%s\" is one GPU for %lld ranks: one rank per GPU; ask for "
                    "\"gpus\": %lld, or name them in \"devices\"",
                    d, (long long)ranks, (long long)ranks);
}

static int parse_bucket_cap(JobSpec *spec, const json_t *root) {
    double mb;
    if (spec_get_number(root, "", "bucket_cap_mb", false, DEFAULT_BUCKET_CAP_MB, &mb)) return -1;
    if (!(mb * 1048576.0 >= 4.0 && mb <= MAX_BUCKET_CAP_MB))
        return error_at("bucket_cap_mb", "expected MiB, at least 4 bytes' worth and at most %g, "
                        "got %g", MAX_BUCKET_CAP_MB, mb);
    spec->bucket_cap_mb = mb;
    return 0;
}

int spec_parse_placement(JobSpec *spec, const json_t *root) {
    int64_t ranks = 1, nodes = 1;
    if (spec_get_int(root, "", "ranks", false, 1, 1, MAX_RANKS, &ranks) ||
        spec_get_int(root, "", "nodes", false, 1, 1, MAX_RANKS, &nodes) ||
        parse_bucket_cap(spec, root))
        return -1;
    bool gpus = json_object_get(root, "gpus") || json_object_get(root, "devices");
    if (gpus ? parse_gpus(spec, root, &ranks) : parse_device(spec, root, ranks)) return -1;
    if (spec->batch_size % ranks != 0)
        return error_at("batch_size",
                        "%lld (the global batch) does not divide by the %lld ranks (%lld = %lld x "
                        "%lld + %lld); choose a multiple of %lld",
                        (long long)spec->batch_size, (long long)ranks,
                        (long long)spec->batch_size, (long long)ranks,
                        (long long)(spec->batch_size / ranks), (long long)(spec->batch_size % ranks),
                        (long long)ranks);
    if (nodes > ranks || ranks % nodes != 0)
        return error_at("nodes", "%lld nodes for %lld ranks: each node runs the same number of "
                                 "ranks, at least one",
                        (long long)nodes, (long long)ranks);
    if (spec->num_devices && nodes > 1)
        return error_at("nodes", "\"devices\" names the GPUs of one machine; across %lld nodes "
                        "ask for \"gpus\": %lld", (long long)nodes, (long long)ranks);
    spec->ranks = (int)ranks;
    spec->nodes = (int)nodes;
    return 0;
}
