"""PyTorch's side of bench/models.sh: the models a lab trains, timed as
traind's job is, on the same data files, and one JSON line out.

  resnet18  torchvision's resnet18(num_classes=10) with the small-input stem
            (3x3 stride-1 conv1, no max-pool), as traind's {"arch":
            "resnet18", "small_input": true}; the .npy inputs (float32
            [N, 3, 32, 32]) and labels; SGD lr 0.1 momentum 0.9, batches of
            --batch in file order. Speed: images per second.
  vgg       a VGG of two stages, each two 3x3 convolutions (64, then 128
            channels) with BatchNorm2d and ReLU and a 2x2 max-pool, then
            Flatten and Linear(8192, 10): bench/models.sh's Sequential
            spec, on the same images, optimizer and batches as resnet18.
  gpt2      GPT-2 small as nanoGPT writes it (tests/fixtures/gen_gpt.py's GPT):
            12 layers, 12 heads, 768 wide, block 1024, vocab 50304, no
            dropout; windows of block + 1 tokens from a uint16 .bin, AdamW
            lr 6e-4. Speed: tokens per second.

--bf16 runs forward and loss under torch.autocast(dtype=torch.bfloat16), as
traind's "precision": "bf16". --device cuda runs it on the GPU (cuDNN's
autotuner on, the batches moved there before timing, the clock read after
a synchronize); --compile wraps the model in torch.compile, whose
compilation falls in the first epoch.

Each epoch is timed whole (its first batch included): with no validation
that is its training time, as traind's train_time_s, over which both count
samples per second; the best epoch is reported beside the mean.

  /usr/bin/python3 bench/torch_models.py --model resnet18 --inputs X.npy --labels Y.npy
  /usr/bin/python3 bench/torch_models.py --model gpt2 --tokens T.bin --batch 1
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures"))


def resnet18_small():
    import torchvision
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = torch.nn.Identity()
    return m


def vgg():
    nn, layers, cin = torch.nn, [], 3
    for cout in (64, 64, "M", 128, 128, "M"):
        if cout == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 8 * 8, 10))


def resnet_batches(args):
    x = torch.from_numpy(np.load(args.inputs))
    y = torch.from_numpy(np.load(args.labels)).long()
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(x), args.batch)]


def gpt_batches(args):
    tokens = np.fromfile(args.tokens, dtype=np.uint16).astype(np.int64)
    t = args.block
    n = (len(tokens) - 1) // t
    windows = [torch.from_numpy(tokens[i * t:i * t + t + 1]) for i in range(n)]
    out = []
    for i in range(0, n, args.batch):
        w = torch.stack(windows[i:i + args.batch])
        out.append((w[:, :-1], w[:, 1:]))
    return out


def gpt2_small(block):
    from gen_gpt import GPT
    return GPT(dict(block_size=block, vocab_size=50304, n_layer=12, n_head=12, n_embd=768,
                    dropout=0.0, bias=True))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["resnet18", "vgg", "gpt2"], required=True)
    p.add_argument("--inputs")
    p.add_argument("--labels")
    p.add_argument("--tokens")
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--impl", default="pytorch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--bf16", action="store_true", help="forward and loss under bf16 autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if args.model in ("resnet18", "vgg"):
        model = resnet18_small() if args.model == "resnet18" else vgg()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        batches, per_sample = resnet_batches(args), 1
        loss_of = lambda out, y: torch.nn.functional.cross_entropy(out, y)
    else:
        model = gpt2_small(args.block)
        opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1)
        batches, per_sample = gpt_batches(args), args.block
        loss_of = lambda out, y: torch.nn.functional.cross_entropy(out[0].view(-1, out[0].size(-1)),
                                                                   y.reshape(-1))
    model.to(dev).train()
    batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    step_model = torch.compile(model) if args.compile else model
    times, losses, samples = [], [], sum(len(b[0]) for b in batches)
    for _ in range(args.epochs):
        sync()
        t0, total = time.perf_counter(), 0.0
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_of(step_model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        sync()
        times.append(time.perf_counter() - t0)
        losses.append(round(total / samples, 5))
    unit = "tokens_per_s" if args.model == "gpt2" else "images_per_s"
    rates = [samples * per_sample / t for t in times]
    print(json.dumps({"bench": args.model, "impl": args.impl, "threads": args.threads,
                      "batch": args.batch, "steps_per_epoch": len(batches),
                      unit: round(samples * per_sample * len(times) / sum(times), 1),
                      "best_epoch_" + unit: round(max(rates), 1),
                      "epoch_time_s": [round(t, 3) for t in times], "train_loss": losses,
                      "device": args.device, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
