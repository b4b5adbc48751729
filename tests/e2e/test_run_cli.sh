#!/usr/bin/env bash
# test_run_cli.sh - `traind run` as a shell user drives it, under ASan:
# --help prints the usage and exits 0, a usage error exits 2 saying what
# is wrong (--job 1.5, --report-timeout alone); a job whose name has quotes and a
# slash writes JSON lines a JSON reader takes whole (its checkpoint paths
# too), into an --out folder made with its parents before the first step;
# the default folder is one under runs/ ('/' and a leading '.' as '_'),
# a killed run's temporary checkpoint there removed;
# SIGTERM, and SIGINT (^C), stop a run at its next step (a SIGTERM after
# the SIGINT too): exit 128 + the signal, one line on stderr saying so,
# every line it printed whole, the checkpoints written so far whole and
# no temporary folder left.
#
#   tests/e2e/test_run_cli.sh [TRAIND]      (default build/traind-asan)
#
# Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=$PWD/${1:-build/traind-asan}
JOBS=$PWD/tests/fixtures/jobs
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

"$TRAIND" run --help >"$TMP/help.out" 2>"$TMP/help.err"
check "run --help: exit 0, the usage on stdout, nothing on stderr" \
    "$? $(grep -c '^usage: traind run JOB.json' "$TMP/help.out") $(wc -c <"$TMP/help.err")" "0 1 0"

# usage errors: exit 2, one line saying what is wrong
"$TRAIND" run x.json --report http://127.0.0.1:1 --job 1.5 --attempt 1 --token-file t \
    >/dev/null 2>"$TMP/u.err"
check "--job 1.5: exit 2, a whole number asked for" \
    "$? $(cat "$TMP/u.err")" "2 traind run: --job: expected a whole number from 1 to 9e+15, got '1.5'"
"$TRAIND" run x.json --report-timeout 5 >/dev/null 2>"$TMP/u.err"
check "--report-timeout without --report: exit 2" "$? $(grep -c 'need --report' "$TMP/u.err")" "2 1"

# job NAME EPOCHS OUT.json: the fixture MLP under NAME, checkpoints each epoch
job() {
    $PY - "$JOBS/mlp_sgd_lambda.json" "$1" "$2" "$JOBS" >"$3" <<'PYEOF'
import json, sys
spec = json.load(open(sys.argv[1]))
spec.update(name=sys.argv[2], epochs=int(sys.argv[3]), checkpoint={"every_epochs": 1, "keep_last": 2})
for split in spec["data"].values() if isinstance(spec["data"], dict) else []:
    if isinstance(split, dict):
        for k in ("images", "labels"):
            if k in split: split[k] = sys.argv[4] + "/" + split[k]
spec["init"] = sys.argv[4] + "/" + spec["init"]
print(json.dumps(spec))
PYEOF
}
# whole_lines FILE: "True" when every line of FILE is a JSON object
whole_lines() {
    $PY -c 'import json, sys; print(all(isinstance(json.loads(l), dict) for l in open(sys.argv[1])))' "$1"
}

job 'wide "v2"\' 1 "$TMP/quoted.json"
"$TRAIND" run "$TMP/quoted.json" --jsonl --out "$TMP/new/a/b" >"$TMP/quoted.jsonl" 2>"$TMP/quoted.err"
check "a name with quotes, --out of missing parents: exit 0" "$?" 0
check "... every line JSON" "$(whole_lines "$TMP/quoted.jsonl")" True
check "... its checkpoint event names the folder written" "$($PY -c '
import json, os, sys
c = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "checkpoint"]
print(len(c), c[0]["path"] == sys.argv[2] + "/epoch-0", os.path.isfile(c[0]["path"] + "/model.safetensors"))' \
    "$TMP/quoted.jsonl" "$TMP/new/a/b")" "1 True True"

mkdir "$TMP/cwd"
job 'lr/0.1' 1 "$TMP/slash.json"
job '..' 1 "$TMP/dots.json"
# a run killed (-9) in its checkpoint left its temporary copy there
DEAD=$(sh -c 'echo $$')
mkdir -p "$TMP/cwd/runs/lr_0.1/epoch-0.tmp.$DEAD.0" "$TMP/cwd/runs/lr_0.1/step-7"
echo part >"$TMP/cwd/runs/lr_0.1/epoch-0.tmp.$DEAD.0/model.safetensors"
# and an earlier run's partial checkpoint, behind the first epoch's
touch "$TMP/cwd/runs/lr_0.1/step-7/model.safetensors" "$TMP/cwd/runs/lr_0.1/step-7/trainer.safetensors"
(cd "$TMP/cwd" && "$TRAIND" run "$TMP/slash.json" 2>"$TMP/slash.err" && "$TRAIND" run "$TMP/dots.json" 2>/dev/null)
check "the default --out: runs/<name>, '/' and a leading '.' as '_'" \
    "$(cd "$TMP/cwd" && ls -d runs/*/epoch-0 | tr '\n' ' ')" "runs/_./epoch-0 runs/lr_0.1/epoch-0 "
check "... a killed run's temporary checkpoint removed, and said so; the partial one gone" \
    "$(ls "$TMP/cwd/runs/lr_0.1") $(grep -c '1 unfinished checkpoint of a killed run cleaned up' "$TMP/slash.err")" \
    "epoch-0 1"

# stopped SIGNAL EXIT [THEN]: a long run stopped by SIGNAL once its first
# checkpoint is out (then sent THEN too, as mpirun sends SIGTERM after the
# ^C its ranks got: not a second ^C); SIGINT through a parent that lets ^C
# reach it (a script's background job ignores it)
stopped() {
    local sig=$1 want=$2 then=${3:-} out="$TMP/stop-$1${3:-}"
    job "stop" 400 "$TMP/stop.json"
    $PY -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$TRAIND" run "$TMP/stop.json" --jsonl --out "$out" >"$out.jsonl" 2>"$out.err" &
    local pid=$!
    for _ in $(seq 600); do
        grep -q '"event":"checkpoint","epoch":1,' "$out.jsonl" 2>/dev/null && break
        sleep 0.1
    done
    kill -"$sig" "$pid"
    [ -z "$then" ] || kill -"$then" "$pid"
    wait "$pid"
    local rc=$?
    check "SIG$sig${then:+ then SIG$then}: exit $want, one line on stderr saying so" \
        "$rc $(wc -l <"$out.err") $(grep -c "^traind run: stopped by SIG$sig: cancelled at step [0-9]*" "$out.err")" "$want 1 1"
    check "... every line it printed JSON, the last checkpoint's among them" \
        "$(whole_lines "$out.jsonl") $(grep -c '"event":"checkpoint","epoch":1,' "$out.jsonl")" "True 1"
    check "... its checkpoints whole, no temporary folder" "$($PY -c '
import os, sys
d = sys.argv[1]
names = sorted(os.listdir(d))
print(all(n.startswith("epoch-") and "." not in n for n in names),
      all(sorted(os.listdir(os.path.join(d, n))) == ["model.safetensors", "trainer.safetensors"] for n in names))' "$out")" \
        "True True"
}
stopped TERM 143
stopped INT 130
stopped INT 130 TERM
summary
