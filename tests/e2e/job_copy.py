"""job_copy.py - a job spec copied out of its directory: its data files and
init checkpoint made absolute (traind resolves them against the spec's own
directory), and fields set from JSON.

    python3 tests/e2e/job_copy.py SRC.json DST.json [FIELD=JSON ...]
    e.g. ... bucket_cap_mb=0.0001 'checkpoint={"every_epochs": 1}' model.dropout=0.1
(a dotted FIELD sets a field of an object inside the job)
"""
import json
import os
import sys

src, dst = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(src))
job = json.load(open(src))
for part in job["data"].values():
    if isinstance(part, dict):
        for key, value in part.items():
            if key in ("path", "inputs", "targets", "images", "labels"):
                part[key] = os.path.join(base, value)
if job.get("init"):
    job["init"] = os.path.join(base, job["init"])
for assignment in sys.argv[3:]:
    field, value = assignment.split("=", 1)
    *outer, last = field.split(".")
    target = job
    for key in outer:
        target = target[key]
    target[last] = json.loads(value)
json.dump(job, open(dst, "w"))
