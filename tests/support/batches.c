/* batches.c - see batches.h. */
#include "tests/support/batches.h"

#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"

static void assert_same_tensor(Tensor *want, Tensor *got, Device device, const char *what,
                               int epoch, int64_t k) {
    cr_assert(device_equal(got->device, device), "epoch %d batch %lld: %s on the wrong device",
              epoch, (long long)k, what);
    cr_assert_eq(got->dtype, want->dtype);
    cr_assert(tensor_same_shape(want, got), "epoch %d batch %lld: %s shape", epoch,
              (long long)k, what);
    Tensor *host = tensor_to_device(got, DEVICE_CPU_INIT);
    cr_assert(host, "%s", error_get());
    cr_assert_eq(memcmp(tensor_data(want), tensor_data(host),
                        (size_t)tensor_numel(want) * dtype_size(want->dtype)), 0,
                 "epoch %d batch %lld: %s differ", epoch, (long long)k, what);
    tensor_release(host);
}

int64_t assert_same_batches(DataLoader *want, DataLoader *got, int epochs, Device device) {
    int64_t compared = 0;
    for (int epoch = 0; epoch < epochs; epoch++) {
        cr_assert_eq(dataloader_begin_epoch(want, epoch), 0, "%s", error_get());
        cr_assert_eq(dataloader_begin_epoch(got, epoch), 0, "%s", error_get());
        Batch a, b;
        int ra;
        while ((ra = dataloader_next(want, &a)) == 1) {
            cr_assert_eq(dataloader_next(got, &b), 1, "epoch %d: %s", epoch, error_get());
            cr_assert_eq(a.index, b.index);
            cr_assert_eq(a.size, b.size);
            cr_assert_eq(a.epoch, b.epoch);
            assert_same_tensor(a.inputs, b.inputs, device, "inputs", epoch, a.index);
            assert_same_tensor(a.targets, b.targets, device, "targets", epoch, a.index);
            batch_release(&a);
            batch_release(&b);
            compared++;
        }
        cr_assert_eq(ra, 0, "%s", error_get());
        cr_assert_eq(dataloader_next(got, &b), 0, "epoch %d: the second loader has more", epoch);
    }
    return compared;
}
