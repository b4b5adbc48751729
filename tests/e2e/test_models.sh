#!/usr/bin/env bash
# test_models.sh - the models a lab trains, as whole `traind run` jobs, each
# against the simple model it must beat, in one run:
#   - a ResNet-18 ({"arch": "resnet18", "small_input": true}) on an image
#     folder of PNGs that scripts/mnist_imagefolder.py writes from the
#     shared MNIST (1024 training images, 500 test images, decoded by the
#     loader's threads, resized to 16x16), two epochs of OneCycleLR, beats
#     a linear model trained five epochs on the same folder;
#   - a character-level GPT ({"arch": "gpt"}, 2 layers) on a text file
#     (/usr/share/common-licenses/GPL-3, 35 kB, which every Debian has),
#     split 90/10, gets its validation loss below the unigram model's (the
#     training split's character frequencies, add-one smoothed, scored on
#     the validation split) within three epochs.
# Both checkpoints hold their reference implementation's state_dict names
# (torchvision's resnet18, nanoGPT's GPT with the tied lm_head). The ResNet
# part skips, saying why, where ../shared has no MNIST.
#
#   tests/e2e/test_models.sh [TRAIND]      (default build/traind)
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

# metric NAME JSONL: the last value of a metric in a --jsonl log
metric() {
    $PY -c '
import json, sys
v = [json.loads(l)["value"] for l in open(sys.argv[2]) if "\"name\":\"%s\"" % sys.argv[1] in l]
print(v[-1] if v else "none")' "$1" "$2"
}

# keys SAFETENSORS: the tensor names of a checkpoint, sorted, one line
keys() {
    $PY -c '
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
print(" ".join(sorted(k for k in json.loads(f.read(n)) if k != "__metadata__")))' "$1"
}

# ---- ResNet-18 on an image folder ----

MNIST=${TRAIND_SHARED:-../shared}/datasets/mnist
if [ ! -f "$MNIST/train-images-idx3-ubyte.gz" ]; then
    skip "ResNet-18 on an MNIST image folder" "$MNIST has no MNIST"
else
    $PY scripts/mnist_imagefolder.py "$TMP/png/train" --split train --limit 1024 >/dev/null &&
        $PY scripts/mnist_imagefolder.py "$TMP/png/test" --split test --limit 500 >/dev/null
    check "scripts/mnist_imagefolder.py writes the folders" "$?" 0
    $PY - "$TMP" <<'PYEOF'
import json, sys
tmp = sys.argv[1]
data = {"train": {"format": "imagefolder", "root": "png/train", "grayscale": True},
        "val": {"format": "imagefolder", "root": "png/test", "grayscale": True},
        "num_workers": 2,
        "transforms": [{"type": "Resize", "size": 16},
                       {"type": "ToTensor"},
                       {"type": "Normalize", "mean": [0.1307], "std": [0.3081]}]}
common = {"loss": {"type": "CrossEntropyLoss"}, "batch_size": 32, "shuffle": True, "seed": 1,
          "metrics": ["accuracy"], "data": data}
resnet = {"name": "resnet", **common, "epochs": 2,
          "model": {"arch": "resnet18", "num_classes": 10, "in_channels": 1, "small_input": True},
          "optimizer": {"type": "AdamW", "lr": 0.002},
          "scheduler": {"type": "OneCycleLR", "max_lr": 0.004}}
linear = {"name": "linear", **common, "epochs": 5, "checkpoint": None,
          "model": [{"type": "Flatten"}, {"type": "Linear", "in_features": 256, "out_features": 10}],
          "optimizer": {"type": "AdamW", "lr": 0.01}}
for spec in (resnet, linear):
    json.dump(spec, open(f"{tmp}/{spec['name']}.json", "w"))
PYEOF
    "$TRAIND" run "$TMP/linear.json" --jsonl --device cpu >"$TMP/linear.jsonl" 2>"$TMP/linear.err"
    check "the linear model trains: exit 0" "$?" 0
    "$TRAIND" run "$TMP/resnet.json" --jsonl --device cpu --out "$TMP/resnet" \
        >"$TMP/resnet.jsonl" 2>"$TMP/resnet.err"
    check "ResNet-18 trains: exit 0" "$?" 0
    lin=$(metric val_accuracy "$TMP/linear.jsonl")
    res=$(metric val_accuracy "$TMP/resnet.jsonl")
    echo "  val_accuracy: ResNet-18 $res (2 epochs), linear $lin (5 epochs)"
    check "ResNet-18 beats the linear model" \
        "$($PY -c "print($res > $lin + 0.03 and $lin > 0.7)" 2>&1)" True
    check "ResNet-18's checkpoint has torchvision's resnet18 names" \
        "$(keys "$TMP/resnet/epoch-1/model.safetensors" | $PY -c '
import sys
k = sys.stdin.read().split()
blocks = [f"layer{l}.{b}" for l in range(1, 5) for b in range(2)]
print(len(k), "conv1.weight" in k, "fc.bias" in k, "layer2.0.downsample.1.running_var" in k,
      all(f"{b}.bn2.num_batches_tracked" in k for b in blocks), "layer1.0.downsample.0.weight" in k)')" \
        "122 True True True True False"
    no_sanitizer_report "no sanitizer report" "$TMP"/*.err
fi

# ---- a character-level GPT on a text file ----

# tests/e2e/gpt_chars.json: the GPT on $TEXT (Debian's GPL-3: 76 characters)
TEXT=/usr/share/common-licenses/GPL-3
unigram=$($PY - "$TEXT" <<'PYEOF'
import collections, math, sys
text = open(sys.argv[1], newline=None).read()
cut = int(len(text) * 0.9)  # the split of {"split": "val", "val_fraction": 0.1}
train, val = text[:cut], text[cut:]
counts, vocab = collections.Counter(train), sorted(set(text))
total = len(train) + len(vocab)
print(-sum(math.log((counts[c] + 1) / total) for c in val[1:]) / (len(val) - 1))
PYEOF
)
"$TRAIND" run tests/e2e/gpt_chars.json --jsonl --device cpu --out "$TMP/gpt" >"$TMP/gpt.jsonl" \
    2>"$TMP/gpt.err"
check "the GPT trains on the text: exit 0" "$?" 0
val=$(metric val_loss "$TMP/gpt.jsonl")
ppl=$(metric val_perplexity "$TMP/gpt.jsonl")
echo "  val_loss: GPT $val (perplexity $ppl), unigram $unigram"
check "the GPT's val_loss is below the unigram model's" \
    "$($PY -c "import math; print($val < $unigram - 0.3 and abs(math.exp($val) - $ppl) < 1e-6 * $ppl)" 2>&1)" True
check "its checkpoint has nanoGPT's names, lm_head tied" \
    "$(keys "$TMP/gpt/epoch-2/model.safetensors" | $PY -c '
import sys
k = sys.stdin.read().split()
print(len(k), "lm_head.weight" in k, "transformer.wte.weight" in k,
      "transformer.h.1.attn.c_attn.weight" in k, "transformer.ln_f.bias" in k)')" \
    "29 True True True True"
no_sanitizer_report "no sanitizer report" "$TMP/gpt.err"
summary
