"""tests/e2e/edge_flood.py - slow and idle clients against a running
daemon, while a probe times GET /v1/health and a job's step is watched.

    edge_flood.py PORT TOKEN JOB SECONDS

From the source addresses 127.0.0.2..127.0.0.40 (so that the daemon's
per-address cap falls on them, not on the probe from 127.0.0.1):
  - 200 slow-loris clients send a request head a byte a second;
  - 1,100 idle clients send one whole request, read its reply and then
    hold the kept-alive connection without a word.
A client whose connection the daemon closes records how long it lived
(from its connect for a slow one, from its reply for an idle one) and
connects again, so the load stays on for the whole run. Meanwhile, from
127.0.0.1, a probe opens a connection every 200 ms, asks GET /v1/health
and times the reply, and every few seconds reads the job's progress.step.
Prints one JSON object: the probes' count, failures and times, the steps
seen, the connections made, and the lifetimes of the closed ones.
"""
import json
import multiprocessing
import resource
import selectors
import socket
import sys
import time

SLOW, IDLE = 200, 1100
SOURCES = ["127.0.0.%d" % i for i in range(2, 41)]


class Client:
    def __init__(self, kind, n):
        self.kind, self.n = kind, n
        self.sock = None


def flood(port, stop, results):
    out = {"connects": {"slow": 0, "idle": 0}, "lifetimes": {"slow": [], "idle": []}}
    sel = selectors.DefaultSelector()
    clients = [Client("slow", i) for i in range(SLOW)] + [Client("idle", i) for i in range(IDLE)]
    head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200

    def connect(c):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((SOURCES[c.n % len(SOURCES)], 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        c.sock, c.sent, c.since, c.replied = s, 0, time.monotonic(), False
        out["connects"][c.kind] += 1
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def closed(c):
        # a slow head lives from its connect, an idle connection from its reply
        if c.kind == "slow" or c.replied:
            out["lifetimes"][c.kind].append(round(time.monotonic() - c.since, 2))
        sel.unregister(c.sock)
        c.sock.close()
        if not stop.is_set():
            connect(c)

    for c in clients:
        connect(c)
    next_byte = time.monotonic() + 1
    while not stop.is_set():
        for key, ev in sel.select(timeout=0.1):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                if c.kind == "idle" and c.sent == 0:
                    try:
                        c.sock.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                        c.sent = 1
                    except OSError:
                        closed(c)
                        continue
                sel.modify(c.sock, selectors.EVENT_READ, c)
            if ev & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed(c)
                elif c.kind == "idle" and not c.replied:
                    c.replied, c.since = True, time.monotonic()
        if time.monotonic() >= next_byte:  # one more byte of every slow head
            next_byte += 1
            for c in clients[:SLOW]:
                if c.sent < len(head):
                    try:
                        c.sock.send(head[c.sent:c.sent + 1])
                        c.sent += 1
                    except OSError:
                        pass
    for c in clients:
        c.sock.close()
    results.put(out)


def get(port, path, token=None, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (path, auth)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def probe(port, token, job, seconds, out):
    end = time.monotonic() + seconds
    next_step = 0.0
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status, _ = get(port, "/v1/health", timeout=2)
            ms = (time.monotonic() - t0) * 1000
            out["probe_ms"].append(round(ms, 1))
            if status != 200:
                out["probe_failures"].append("status %d" % status)
        except OSError as e:
            out["probe_failures"].append(repr(e))
        if t0 >= next_step:
            next_step = t0 + 4
            try:
                _, body = get(port, "/v1/jobs/%s" % job, token)
                out["steps"].append(json.loads(body)["progress"]["step"])
            except (OSError, ValueError, KeyError) as e:
                out["probe_failures"].append("job: %r" % e)
        time.sleep(max(0.0, 0.2 - (time.monotonic() - t0)))


def main():
    port, token, job, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = SLOW + IDLE + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    out = {"probe_ms": [], "probe_failures": [], "steps": []}
    # the flood in a process of its own: the probe's times are the
    # daemon's, not those of a Python thread waiting for the other's lock
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    p = multiprocessing.Process(target=flood, args=(port, stop, results))
    p.start()
    time.sleep(1.5)  # every client connected and the idle ones replied to
    probe(port, token, job, seconds, out)
    stop.set()
    out.update(results.get(timeout=30))
    p.join()
    print(json.dumps(out))


main()
