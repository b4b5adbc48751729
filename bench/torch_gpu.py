"""PyTorch CUDA loops for `make bench-gpu` (bench/gpu.sh), timed as traind
times itself: train_samples_per_s is training samples over training time
(each epoch's training loop, synchronized, not its validation);
epoch_time_s is the whole epoch, training and validation.

    python3 bench/torch_gpu.py --model mlp|cnn --data MNIST_DIR [--epochs 2]
    python3 bench/torch_gpu.py --model gemm --npy DIR [--epochs 2]

mlp / cnn: the loop of bench/run.sh on the GPU (batch 64, shuffle, SGD lr
0.01 momentum 0.9, LambdaLR 0.95**epoch, ToTensor + Normalize(0.5, 1.0),
validation on the test set); the data set sits on the GPU, normalised
once, and batches are slices of a shuffled index (PyTorch eager at its
fastest, no DataLoader). gemm: the GEMM-heavy MLP 4096-4096-4096-10,
batch 1024, SGD lr 0.01, on x.npy / y.npy of DIR, no validation. float32,
TF32 off (torch's default for matmul) unless --tf32; --bf16 runs forward and
loss under torch.autocast("cuda", dtype=torch.bfloat16), as a job's
"precision": "bf16". One JSON line on stdout.
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def model_for(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("mlp", "cnn", "gemm"), required=True)
    ap.add_argument("--data")
    ap.add_argument("--npy")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls (a job's allow_tf32)")
    ap.add_argument("--bf16", action="store_true", help="autocast to bf16 (a job's precision)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    dev = torch.device("cuda")
    if args.model == "gemm":
        x = torch.from_numpy(np.load(os.path.join(args.npy, "x.npy"))).to(dev)
        y = torch.from_numpy(np.load(os.path.join(args.npy, "y.npy"))).long().to(dev)
        vx = vy = None
        batch, shuffle, lr, momentum = 1024, False, 0.01, 0.0
    else:
        d = args.data
        x = torch.from_numpy(read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).copy())
        y = torch.from_numpy(read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).copy())
        vx = torch.from_numpy(read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).copy())
        vy = torch.from_numpy(read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")).copy())
        norm = lambda t: ((t.float() / 255.0 - 0.5) / 1.0).unsqueeze(1).to(dev)
        x, vx = norm(x), norm(vx)
        y, vy = y.long().to(dev), vy.long().to(dev)
        batch, shuffle, lr, momentum = 64, True, 0.01, 0.9
    model = model_for(args.model).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.95 ** e)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    times, train_times, losses, acc = [], [], [], None
    for epoch in range(args.epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=dev) if shuffle else torch.arange(n, device=dev)
        total = torch.zeros((), device=dev)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * idx.shape[0]
        torch.cuda.synchronize()
        train_times.append(time.perf_counter() - t0)
        if vx is not None:
            model.eval()
            correct = torch.zeros((), device=dev)
            with torch.no_grad():
                for i in range(0, vx.shape[0], batch):
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
                        correct += (model(vx[i:i + batch]).argmax(1) == vy[i:i + batch]).sum()
            acc = correct.item() / vx.shape[0]
        losses.append(total.item() / n)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        sched.step()
    name = "mnist_" + args.model if args.model != "gemm" else "gemm_mlp_4096"
    out = {"bench": name + ("_tf32" if args.tf32 else "") + ("_bf16" if args.bf16 else ""),
           "impl": "pytorch-cuda", "torch": torch.__version__,
           "device": torch.cuda.get_device_name(0),
           "train_samples_per_s": round(n * len(train_times) / sum(train_times), 1),
           "best_epoch_samples_per_s": round(n / min(train_times), 1),
           "train_time_s": [round(t, 3) for t in train_times],
           "epoch_time_s": [round(t, 3) for t in times],
           "train_loss": [round(v, 5) for v in losses]}
    if acc is not None:
        out["test_accuracy"] = acc
    print(json.dumps(out))


if __name__ == "__main__":
    main()
