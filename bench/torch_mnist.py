"""The seed's PyTorch loop on MNIST, timed the way traind times itself.

    /usr/bin/python3 bench/torch_mnist.py --model mlp|cnn [--data DIR] [--epochs 2]
                                          [--threads 2] [--loader dataset|tensor]
                                          [--channels-last] [--impl NAME]

Prints one JSON line: {"bench": "mnist_<model>", "impl": "pytorch",
"train_samples_per_s", "test_accuracy", "train_time_s": [...],
"epoch_time_s": [...], ...}.

The loop is the one bench/run.sh gives traind as a job spec: batch 64,
shuffle on, SGD lr 0.01 momentum 0.9, LambdaLR 0.95**epoch stepped after each
epoch, CrossEntropyLoss, ToTensor + Normalize(0.5, 1.0), validation on the
test set each epoch in eval mode under no_grad (batch 64). Timing is
traind's: train_samples_per_s is training samples over training time (the
training loop of each epoch, its data loading included, validation not, as
a PyTorch user times a loop), summed over the epochs; best_epoch_samples_per_s
is the fastest epoch's; epoch_time_s is each whole epoch, training and
validation. test_accuracy is the last epoch's validation accuracy.

--loader dataset (default) is the seed's data path: a map-style Dataset
whose __getitem__ applies ToTensor and Normalize to one image, as
torchvision's MNIST does (torchvision is not installed here, so the
transforms are written out), batched by DataLoader(batch_size=64,
shuffle=True). --loader tensor normalizes the whole set once and slices
batches from a shuffled index: PyTorch without per-sample overhead, the
fastest loop it has here. --channels-last puts the model and each input
batch in torch.channels_last (NHWC), the layout PyTorch's oneDNN
convolutions run fastest in on a CPU (the batch's conversion is timed).
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class MnistDataset(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST with ToTensor() and Normalize((0.5,), (1.0,))."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.mean = torch.tensor([0.5])
        self.std = torch.tensor([1.0])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i].copy()).to(torch.float32).div(255).unsqueeze(0)
        x = x.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])
        return x, int(self.labels[i])


def tensor_batches(x, y, batch, shuffle, gen):
    idx = torch.randperm(len(x), generator=gen) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), batch):
        j = idx[i:i + batch]
        yield x[j], y[j]


def build(model):
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("mlp", "cnn"), required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                   "shared", "datasets", "mnist"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loader", choices=("dataset", "tensor"), default="dataset")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input batches in torch.channels_last")
    ap.add_argument("--impl", default="pytorch", help="the name in the JSON line")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for init and shuffle")
    args = ap.parse_args()

    wall0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d = args.data
    train_x = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    train_y = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    test_x = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    if args.loader == "dataset":
        train_dl = torch.utils.data.DataLoader(MnistDataset(train_x, train_y),
                                               batch_size=args.batch_size, shuffle=True)
        test_dl = torch.utils.data.DataLoader(MnistDataset(test_x, test_y),
                                              batch_size=args.batch_size, shuffle=False)
        train_batches, test_batches = (lambda: iter(train_dl)), (lambda: iter(test_dl))
    else:
        def prep(x):
            return torch.from_numpy(x.copy()).to(torch.float32).div(255).unsqueeze(1).sub(0.5)
        tx, ty = prep(train_x), torch.from_numpy(train_y.astype(np.int64))
        vx, vy = prep(test_x), torch.from_numpy(test_y.astype(np.int64))
        gen = torch.Generator().manual_seed(args.seed)
        train_batches = lambda: tensor_batches(tx, ty, args.batch_size, True, gen)  # noqa: E731
        test_batches = lambda: tensor_batches(vx, vy, args.batch_size, False, gen)  # noqa: E731

    model = build(args.model)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 0.95 ** epoch)

    epoch_times, train_times, samples, accs, losses = [], [], 0, [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        lsum, n = 0.0, 0
        for x, y in train_batches():
            x = x.to(memory_format=fmt)
            opt.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            lsum += loss.item() * len(x)
            n += len(x)
        train_times.append(time.perf_counter() - t0)
        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for x, y in test_batches():
                correct += (model(x.to(memory_format=fmt)).argmax(1) == y).sum().item()
                total += len(x)
        epoch_times.append(time.perf_counter() - t0)
        samples += n
        accs.append(correct / total)
        losses.append(lsum / n)
        sched.step()

    print(json.dumps({
        "bench": f"mnist_{args.model}", "impl": args.impl,
        "train_samples_per_s": round(samples / sum(train_times), 1),
        "best_epoch_samples_per_s": round(samples / args.epochs / min(train_times), 1),
        "test_accuracy": accs[-1],
        "train_time_s": [round(t, 3) for t in train_times],
        "epoch_time_s": [round(t, 3) for t in epoch_times],
        "train_loss": [round(v, 5) for v in losses],
        "train_samples": samples // args.epochs, "test_samples": total,
        "threads": torch.get_num_threads(), "loader": args.loader,
        "channels_last": args.channels_last,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "default"),
        "torch": torch.__version__, "wall_s": round(time.perf_counter() - wall0, 2)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
