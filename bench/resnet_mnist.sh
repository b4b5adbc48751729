#!/usr/bin/env bash
# bench/resnet_mnist.sh - issue 13's long run, outside `make test` (about 12
# minutes on 2 cores): a ResNet-18 with the small-input stem trained on an
# image folder of PNGs that scripts/mnist_imagefolder.py writes from the
# shared MNIST (its 20,000 training images; the 10,000 test images as
# validation), decoded by the loader's threads, resized to 16x16 and
# randomly cropped (padding 1), AdamW with OneCycleLR, two epochs. Then the
# checkpoint is loaded into torchvision's resnet18 (1-channel conv1, the
# small-input stem) with load_state_dict(strict=True) and scored on the same
# test folder through torchvision's own pipeline (PIL, transforms.Resize,
# ToTensor, Normalize): it must give traind's accuracy. JSON lines:
#
#   {"bench": "resnet18_mnist_folder", "impl": "traind", "test_accuracy": ...,
#    "epoch_time_s": [...], ...}
#   {"bench": "resnet18_mnist_folder", "impl": "torchvision-eval", "test_accuracy": ...,
#    "same_as_traind": true}
#
#   bench/resnet_mnist.sh [TRAIND]      (default build/traind; EPOCHS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

TRAIND=${1:-build/traind}
EPOCHS=${EPOCHS:-2}
MNIST=${MNIST_DIR:-../shared/datasets/mnist}
if [ ! -f "$MNIST/train-images-idx3-ubyte.gz" ]; then
    echo "bench: skipped: $MNIST has no MNIST" >&2
    echo '{"bench": "resnet18_mnist_folder", "skipped": "no MNIST"}'
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 scripts/mnist_imagefolder.py "$TMP/png/train" --split train >/dev/null
/usr/bin/python3 scripts/mnist_imagefolder.py "$TMP/png/test" --split test >/dev/null
cat >"$TMP/job.json" <<EOF
{"name": "resnet18-mnist-folder",
 "data": {"train": {"format": "imagefolder", "root": "png/train", "grayscale": true},
          "val": {"format": "imagefolder", "root": "png/test", "grayscale": true},
          "num_workers": 2,
          "transforms": [{"type": "Resize", "size": 16},
                         {"type": "RandomCrop", "size": 16, "padding": 1},
                         {"type": "ToTensor"},
                         {"type": "Normalize", "mean": [0.1307], "std": [0.3081]}]},
 "model": {"arch": "resnet18", "num_classes": 10, "in_channels": 1, "small_input": true},
 "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "AdamW", "lr": 0.002, "weight_decay": 0.01},
 "scheduler": {"type": "OneCycleLR", "max_lr": 0.004},
 "epochs": $EPOCHS, "batch_size": 64, "shuffle": true, "seed": 0, "metrics": ["accuracy"]}
EOF
"$TRAIND" run "$TMP/job.json" --jsonl --device cpu --out "$TMP/out" >"$TMP/run.jsonl" \
    2>"$TMP/run.err" || { echo "bench: traind failed: $(tail -3 "$TMP/run.err")" >&2; exit 1; }
ours=$(bench_summarize resnet18_mnist_folder "$TMP/run.jsonl" traind)
echo "$ours"
if ! /usr/bin/python3 -c 'import torchvision, PIL' 2>/dev/null; then
    echo "bench: no torchvision or PIL: the checkpoint is not scored in PyTorch" >&2
    exit 0
fi
/usr/bin/python3 - "$TMP" "$((EPOCHS - 1))" "$ours" <<'PYEOF'
import json, os, sys
import torch, torchvision
import torchvision.transforms as T
from PIL import Image
sys.path.insert(0, "tests/fixtures")
from check_safetensors_in_torch import load_safetensors

tmp, last, ours = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = torchvision.models.resnet18(num_classes=10)
model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
model.maxpool = torch.nn.Identity()
state, _ = load_safetensors(f"{tmp}/out/epoch-{last}/model.safetensors")
model.load_state_dict(state, strict=True)
model.eval()
# eval: RandomCrop(16, padding 1) takes the centre of the 18x18 padded image, the image itself
pipeline = T.Compose([T.Resize(16), T.ToTensor(), T.Normalize([0.1307], [0.3081])])
folder = torchvision.datasets.ImageFolder(f"{tmp}/png/test", transform=pipeline,
                                          loader=lambda p: Image.open(p).convert("L"))
loader = torch.utils.data.DataLoader(folder, batch_size=500)
right = 0
with torch.no_grad():
    for x, y in loader:
        right += (model(x).argmax(1) == y).sum().item()
acc = right / len(folder)
print(json.dumps({"bench": "resnet18_mnist_folder", "impl": "torchvision-eval",
                  "test_accuracy": acc, "images": len(folder),
                  "same_as_traind": abs(acc - ours["test_accuracy"]) < 2e-4,
                  "torch": torch.__version__}))
PYEOF
