"""tests/e2e/import_server.py - the web servers URL imports are tested
against (tests/e2e/test_imports.sh): files served at a chosen pace, a
server that stalls, redirects.

    python3 import_server.py DIR BIND_ADDRESS LOG

prints {"port": N} once listening, then serves, one thread per connection:
    GET /files/NAME?rate=B   DIR/NAME with its Content-Length, B bytes every
                             0.1 s (default: all at once)
    GET /stall               a Content-Length of 1 MB, then one byte a second
    GET /redirect?to=URL     302 to URL
Each line of LOG says what happened: "open PATH", "sent PATH", "gone PATH
after N bytes" when the client closed the connection mid-transfer.
"""
import http.server
import json
import os
import socketserver
import sys
import threading
import time
import urllib.parse

ROOT, BIND, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
log_lock = threading.Lock()


def log(line):
    with log_lock, open(LOG, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_slowly(self, path, chunks, pause):
        sent = 0
        try:
            for c in chunks:
                self.wfile.write(c)
                self.wfile.flush()
                sent += len(c)
                time.sleep(pause)
            log("sent %s" % path)
        except (BrokenPipeError, ConnectionResetError):
            log("gone %s after %d bytes" % (path, sent))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        log("open %s" % url.path)
        if url.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.send_slowly(url.path, (b"x" for _ in range(1 << 20)), 1.0)
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path.startswith("/files/"):
            name = os.path.basename(url.path)
            try:
                data = open(os.path.join(ROOT, name), "rb").read()
            except OSError:
                self.send_error(404)
                return
            rate = int(query.get("rate", [len(data) or 1])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            chunks = (data[i:i + rate] for i in range(0, len(data), rate))
            self.send_slowly(url.path, chunks, 0.1 if rate < len(data) else 0)
        else:
            self.send_error(404)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    address_family = __import__("socket").AF_INET6 if ":" in BIND else __import__("socket").AF_INET


server = Server((BIND, 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
