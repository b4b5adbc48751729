"""Compares `traind run --jsonl` output with PyTorch's expected metrics.

    python3 tests/e2e/compare_metrics.py EXPECTED.json ACTUAL.jsonl [--rtol 1e-4]
        [--after-step S]

EXPECTED.json is written by tests/fixtures/gen_jobs.py: {"metrics": [{"name",
"step", "epoch", "value"}, ...]}; an EXPECTED.jsonl is another traind run's
output (a data-parallel run against the one-process run). --after-step S
compares only the expected metrics of steps after S (a run resumed there).
Every expected metric must appear in ACTUAL with the same name, step and
epoch, and a value within rtol relative (an absolute 1e-12 floor for values
at zero); the loop's metrics that PyTorch logs (loss, lr, grad_norm,
train_*, val_*) must not appear in ACTUAL beyond those.
Timing metrics (samples_per_s, epoch_time_s) are not compared. Prints the
first few mismatches and the worst relative error; exit status 0 when all
match, 1 when EXPECTED holds none to compare (an empty or failed run is
no agreement). Plain python3, no numpy: CI has no torch.
"""
import json
import math
import sys

COMPARED = ("loss", "lr", "grad_norm", "train_loss", "train_accuracy", "train_perplexity",
            "val_loss", "val_accuracy", "val_perplexity")


def read_jsonl(path):
    """The compared metrics of a --jsonl output, {(name, step, epoch): value},
    or a message saying what is wrong with it."""
    metrics = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError as e:
                return f"line {n} of the output is not JSON: {e}: {line[:80]}"
            if ev.get("event") != "metric" or ev.get("name") not in COMPARED:
                continue
            key = (ev["name"], ev["step"], ev["epoch"])
            if key in metrics:
                return f"{key[0]} step {key[1]} epoch {key[2]}: logged twice"
            metrics[key] = ev["value"]
    return metrics


def main(argv):
    rtol, after = 1e-4, None
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--rtol":
            rtol = float(argv[i + 1])
            i += 2
        elif argv[i] == "--after-step":
            after = int(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 2:
        print("usage: compare_metrics.py EXPECTED.json ACTUAL.jsonl [--rtol R]", file=sys.stderr)
        return 2
    if args[0].endswith(".jsonl"):
        logged = read_jsonl(args[0])
        if isinstance(logged, str):
            print(f"  {args[0]}: {logged}")
            return 1
        expected = [{"name": k[0], "step": k[1], "epoch": k[2], "value": v}
                    for k, v in logged.items()]
    else:
        with open(args[0]) as f:
            expected = json.load(f)["metrics"]
    if after is not None:
        expected = [m for m in expected if m["step"] > after]
    actual = read_jsonl(args[1])
    if isinstance(actual, str):
        print(f"  {actual}")
        return 1
    if not expected:  # two empty runs agree on nothing: not a pass
        print(f"  {args[0]}: no metrics to compare"
              + (f" after step {after}" if after is not None else ""))
        return 1

    errors, worst, worst_key = [], 0.0, None
    for m in expected:
        key = (m["name"], m["step"], m["epoch"])
        want = m["value"]
        if key not in actual:
            errors.append(f"{key[0]} step {key[1]} epoch {key[2]}: missing (expected {want:.8g})")
            continue
        got = actual.pop(key)
        if not isinstance(got, (int, float)):
            errors.append(f"{key[0]} step {key[1]} epoch {key[2]}: value {got!r} is not a number")
            continue
        if math.isnan(want) or math.isnan(got):  # rel would be NaN, which no test fails
            if not (math.isnan(want) and math.isnan(got)):
                errors.append(f"{key[0]} step {key[1]} epoch {key[2]}: got {got:.8g}, "
                              f"expected {want:.8g}")
            continue
        rel = abs(got - want) / max(abs(want), 1e-12)
        if rel > worst:
            worst, worst_key = rel, key
        if rel > rtol:
            errors.append(f"{key[0]} step {key[1]} epoch {key[2]}: got {got:.8g}, expected "
                          f"{want:.8g} (relative error {rel:.2e} > {rtol:g})")
    for key in sorted(actual):
        errors.append(f"{key[0]} step {key[1]} epoch {key[2]}: not expected (PyTorch logs none)")
    for e in errors[:8]:
        print("  " + e)
    if len(errors) > 8:
        print(f"  ... and {len(errors) - 8} more")
    where = f" ({worst_key[0]} step {worst_key[1]})" if worst_key else ""
    print(f"  {len(expected)} metrics, worst relative error {worst:.2e}{where}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
