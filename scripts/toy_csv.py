"""scripts/toy_csv.py - the synthetic CSV that the e2e tests and the API
benchmark upload: ROWS rows of four features x0..x3 and a label in 0..2
(row i has label i % 3); features are Gaussian (sd 0.5) around 1 on the
label's own feature and 0 elsewhere, so a small MLP learns it quickly.
The same rows every time (random.seed(0)).

    python3 scripts/toy_csv.py ROWS PATH
or, from Python, toy_csv.text(ROWS).
"""
import random
import sys


def text(rows):
    """The CSV of `rows` rows, header included, as one string."""
    rng = random.Random(0)
    lines = ["x0,x1,x2,x3,label\n"]
    for i in range(rows):
        y = i % 3
        xs = [rng.gauss(y if k == y else 0.0, 0.5) for k in range(4)]
        lines.append(",".join("%.5f" % x for x in xs) + ",%d\n" % y)
    return "".join(lines)


def main():
    rows, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "w") as f:
        f.write(text(rows))


if __name__ == "__main__":
    main()
