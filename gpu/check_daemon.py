"""gpu/check_daemon.py - the daemon on a GPU machine (gpu/README.md, item 6),
driven over HTTP as a user would, with Python's urllib only (a GPU machine
may have no curl):

  - `traind serve` without --devices has a worker on cuda:0 (and the CPU);
  - GET /v1/devices names the GPU with its memory and free memory, and shows
    the job running on it;
  - an "auto" job lands on cuda:0 and reports peak_memory_bytes per epoch;
  - a job too large for the GPU is refused at submission (422, path
    "model", naming cuda:0's memory), and the next job on that GPU trains.

    python3 gpu/check_daemon.py [TRAIND [EPOCHS]]
        (default build/traind; EPOCHS of the auto job, 30 by default: on the
        simulated device, tests/e2e/test_simdev.sh, fewer)

Prints PASS/FAIL lines and ends with "N passed, N failed"; exits 1 on a failure.
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import toy_csv  # noqa: E402  (scripts/toy_csv.py: the tests' synthetic CSV)

TRAIND = sys.argv[1] if len(sys.argv) > 1 else "build/traind"
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS", name, flush=True)
    else:
        failed += 1
        print("FAIL", name + ":", detail, flush=True)


class Api:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def upload_csv(self, name, text):
        boundary = "traindcheck%08x" % random.getrandbits(32)
        parts = []
        for field, value in (("name", name), ("format", "csv"), ("label_column", "label")):
            parts.append('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                         % (boundary, field, value))
        parts.append('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s.csv"\r\n'
                     'Content-Type: text/csv\r\n\r\n%s\r\n--%s--\r\n' % (boundary, name, text, boundary))
        return self.call("POST", "/v1/datasets", "".join(parts).encode(),
                         "multipart/form-data; boundary=" + boundary)

    def wait(self, job, secs, states=("succeeded", "failed", "cancelled")):
        d = {}
        for _ in range(secs * 10):
            _, d = self.call("GET", "/v1/jobs/%d" % job)
            if d.get("state") in states:
                break
            time.sleep(0.1)
        return d


def job_spec(name, device, hidden, epochs, batch, dataset="tab"):
    return json.dumps({
        "name": name, "device": device, "data": {"train": dataset},
        "model": [{"type": "Linear", "in_features": 4, "out_features": hidden}, {"type": "ReLU"},
                  {"type": "Linear", "in_features": hidden, "out_features": 3}],
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
        "epochs": epochs, "batch_size": batch, "shuffle": True, "seed": 7,
        "checkpoint": {"every_epochs": 1, "keep_last": 1}}).encode()


def main():
    data = tempfile.mkdtemp(prefix="traind-gpu-check-")
    log = open(os.path.join(data, "daemon.log"), "w+")
    proc = subprocess.Popen([TRAIND, "serve", "--port", "0", "--bind", "127.0.0.1",
                             "--data-dir", data], stderr=log)
    try:
        port = None
        for _ in range(150):
            log.seek(0)
            m = re.search(r'"event":"listening".*"port":(\d+)', log.read())
            if m or proc.poll() is not None:
                port = m and int(m.group(1))
                break
            time.sleep(0.1)
        check("the daemon starts", port is not None, "no listening line")
        if port is None:
            return
        api = Api("http://127.0.0.1:%d" % port, open(os.path.join(data, "admin.token")).read().strip())

        st, d = api.call("GET", "/v1/devices")
        print("GET /v1/devices:", json.dumps(d), flush=True)
        gpus = [e for e in (d or {}).get("devices", []) if e.get("device", "").startswith("cuda:")]
        check("GET /v1/devices lists cuda:0", st == 200 and gpus and gpus[0]["device"] == "cuda:0",
              json.dumps(d))
        if not gpus:
            return
        g = gpus[0]
        check("cuda:0 has a name, memory and free memory",
              bool(g.get("name")) and g.get("memory_bytes", 0) > 0
              and 0 < g.get("memory_free_bytes", 0) <= g["memory_bytes"], json.dumps(g))
        check("one worker on cuda:0 by default", len(g.get("workers", [])) == 1, json.dumps(g))

        st, d = api.upload_csv("tab", toy_csv.text(4000))
        check("upload a CSV", st == 201, json.dumps(d))
        st, d = api.upload_csv("wide", toy_csv.text(20000))
        check("upload a larger CSV", st == 201, json.dumps(d))

        # An auto job: the GPU is free, so it goes there.
        st, d = api.call("POST", "/v1/jobs", job_spec("auto-job", "auto", 64, EPOCHS, 32))
        check("submit an auto job", st == 201, json.dumps(d))
        job = d.get("id", 0)
        seen_on_gpu = False
        for _ in range(100):
            _, dv = api.call("GET", "/v1/devices")
            for e in dv.get("devices", []):
                if e["device"] == "cuda:0":
                    seen_on_gpu |= any((w.get("job") or {}).get("id") == job for w in e["workers"])
            _, j = api.call("GET", "/v1/jobs/%d" % job)
            if seen_on_gpu or j.get("state") in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        check("GET /v1/devices shows the job on cuda:0", seen_on_gpu)
        j = api.wait(job, 120)
        check("the auto job succeeds on cuda:0",
              j.get("state") == "succeeded" and j.get("device") == "cuda:0", json.dumps(j))
        st, m = api.call("GET", "/v1/jobs/%d/metrics?name=peak_memory_bytes" % job)
        pts = (m or {}).get("points") or (m or {}).get("metrics") or []
        print("peak_memory_bytes:", json.dumps(m)[:400], flush=True)
        check("peak_memory_bytes is reported per epoch on the GPU",
              st == 200 and len(pts) == EPOCHS, json.dumps(m)[:400])

        # Too large for the GPU: a [20000, 2M] float32 activation is 160 GB
        # (the weights, 4x2M and 2Mx3, are 56 MB). The daemon's estimate of
        # what training needs refuses it at submission, naming the device's
        # memory; an out-of-memory while training is the unit test
        # gpu::out_of_memory_fails_cleanly's.
        st, d = api.call("POST", "/v1/jobs",
                         job_spec("too-big", "cuda:0", 2_000_000, 1, 20000, "wide"))
        err = d.get("error", {})
        check("a job too large for the GPU is refused at submission",
              st == 422 and err.get("path") == "model" and "cuda:0" in err.get("message", ""),
              json.dumps(d))

        st, d = api.call("POST", "/v1/jobs", job_spec("after-refusal", "cuda:0", 64, 3, 32))
        j = api.wait(d["id"], 120) if "id" in d else d
        check("the next job on cuda:0 trains", j.get("state") == "succeeded", json.dumps(j))
        st, d = api.call("GET", "/v1/health")
        check("the daemon is alive", st == 200, json.dumps(d))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        tail = log.read()[-3000:]
        print("daemon log (tail):\n" + tail, flush=True)
        print("%d passed, %d failed" % (passed, failed), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(1 if failed else 0)
