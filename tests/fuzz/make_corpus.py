#!/usr/bin/env python3
"""make_corpus.py - writes the seed corpora of tests/fuzz/corpus/<target>/.

Small real inputs (the job specs of tests/fixtures and README.md, numpy's
.npy files and torch's .safetensors files of tests/fixtures, IDX and CSV
files as the loaders' tests write them, multipart bodies as curl -F sends
them) and a few near-misses of each. Stdlib only; run it from anywhere:

    python3 tests/fuzz/make_corpus.py

Each file is framed as its target reads it (tests/fuzz/README.md): the
two-byte length prefix of two-file targets, the CSV options byte, the
multipart write-size byte and Content-Type line.
"""
import gzip
import io
import json
import os
import struct
import tarfile
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "fixtures")


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(*parts):
    with open(os.path.join(FIX, *parts), "rb") as f:
        return f.read()


def pair(a, b):
    """Two files in one input: a's length (2 bytes, little-endian), a, b."""
    assert len(a) < 65536
    return struct.pack("<H", len(a)) + a + b


def spec():
    for name in ["mlp_sgd_lambda", "cnn_adam_steplr", "csv_regression_adamw_cosine",
                 "batchnorm_dropout_sgd_multistep"]:
        # compact: the same spec in fewer bytes for the mutator
        text = json.dumps(json.loads(fixture("jobs", name + ".json")), separators=(",", ":"))
        out("spec", name + ".json", text)
    readme_cnn = {
        "name": "mnist-cnn",
        "data": {"train": "mnist-train", "val": "mnist-test",
                 "transforms": [{"type": "ToTensor"},
                                {"type": "Normalize", "mean": [0.5], "std": [1.0]}]},
        "model": [{"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3,
                   "padding": 1},
                  {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
                  {"type": "Linear", "in_features": 6272, "out_features": 10}],
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
        "scheduler": {"type": "LambdaLR", "lr_lambda": "0.95 ** epoch"},
        "epochs": 2, "batch_size": 64, "shuffle": True, "seed": 0, "device": "auto",
        "metrics": ["accuracy"], "checkpoint": {"every_epochs": 1, "keep_last": 3},
        "init": None,
    }
    out("spec", "readme_cnn.json", json.dumps(readme_cnn, separators=(",", ":")))
    minimal = {"data": {"train": "d"}, "model": [{"type": "Linear", "in_features": 2,
                                                    "out_features": 1}],
               "loss": {"type": "MSELoss"}, "optimizer": {"type": "SGD", "lr": 0.1},
               "epochs": 1}
    out("spec", "minimal.json", json.dumps(minimal, separators=(",", ":")))
    npy = dict(minimal, data={"train": {"format": "npy", "inputs": "x.npy", "targets": "y.npy"},
                              "val": {"format": "csv", "path": "v.csv",
                                      "label_column": ["y1", "y2"]}},
               model=[{"type": "BatchNorm1d", "num_features": 2, "momentum": None},
                      {"type": "Dropout", "p": 0.2}, {"type": "Softmax", "dim": 1},
                      {"type": "AvgPool2d", "kernel_size": [2, 1], "stride": None}],
               optimizer={"type": "Adam", "lr": 0.001, "betas": [0.9, 0.99], "amsgrad": True},
               scheduler={"type": "MultiStepLR", "milestones": [3, 1], "gamma": 0.5})
    out("spec", "npy_multistep.json", json.dumps(npy, separators=(",", ":")))
    # near-misses: each one error of the kinds spec.h lists
    out("spec", "miss_typo.json", json.dumps(dict(minimal, optimizer={
        "type": "SGD", "lr": 0.1, "momentun": 0.9})))
    out("spec", "miss_epochs.json", json.dumps(dict(minimal, epochs=0)))
    out("spec", "miss_layer.json", json.dumps(dict(minimal, model=[{"type": "Conv3d"}])))
    out("spec", "miss_lambda.json", json.dumps(dict(minimal, scheduler={
        "type": "LambdaLR", "lr_lambda": "0.95 $ epoch"})))
    out("spec", "miss_json.json", '{"epochs": 1,, "model": []}')


def lr_expr():
    exprs = ["0.95 ** epoch", "min(1.0, (epoch + 1) / 5)", "max(0.1, exp(-0.1 * epoch))",
             "0.5 * (1 + cos(3.141592653589793 * epoch / 10))", "sqrt(epoch + 1) / 2",
             "-2**2 + 2**3**2 * 2**-1", "1e-3 + .5 - 2.5E+2 / +4", "min(1, 2, 3, epoch)",
             # near-misses
             "0.95 ^ epoch", "min(1)", "exp(1, 2)", "epoch $ 2", "(epoch", "1 / (epoch - epoch)",
             "sqrt(-1)", "0 ** -1", "(-8) ** 0.5", "10 ** 400", "lr * epoch", "1e"]
    for i, e in enumerate(exprs):
        out("lr_expr", "expr%02d" % i, e)


def csv():
    # options byte: bit 0 regression, bit 1 label_column y (or y, z), bit 2 features a, b
    reg = fixture("jobs", "data", "regression-train.csv").decode().splitlines()
    out("csv", "regression_fixture", b"\x01" + ("\n".join(reg[:12]) + "\n").encode())
    out("csv", "classification", b"\x00" + b"a,b,label\n1,2,0\n3.5,-4e2,1\n5,6,2\n")
    out("csv", "labels_named", b"\x06" + b"\xef\xbb\xbfa,y,b\r\n\"1\",0,2\r\n3,\"1\",4\r\n\r\n")
    out("csv", "two_targets", b"\x07" + b"z,a,y,b\n0.5,1,2,3\n1.5,4,5,6\n")
    out("csv", "quoted", b"\x01" + b"\"a\"\"q\",y\n\" 1 \",2\n")
    # near-misses
    out("csv", "miss_nan", b"\x00" + b"a,label\nnan,0\n")
    out("csv", "miss_label", b"\x00" + b"a,label\n1,1.5\n")
    out("csv", "miss_ragged", b"\x00" + b"a,b,c\n1,2,3\n4,5\n")
    out("csv", "miss_quote", b"\x00" + b"a,label\n\"1,0\n")
    out("csv", "miss_blank", b"\x00" + b"a,label\n1,0\n\n2,1\n")


def idx_file(magic_ndim, dims, data):
    return struct.pack(">I", 0x0800 | magic_ndim) + b"".join(struct.pack(">I", d) for d in dims) \
        + bytes(data)


def idx():
    images = idx_file(3, [2, 3, 3], range(18))
    labels = idx_file(1, [2], [1, 0])
    out("idx", "raw", pair(images, labels))
    out("idx", "gzipped", pair(gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))
    out("idx", "mixed", pair(images, gzip.compress(labels, mtime=0)))
    # near-misses
    out("idx", "miss_count", pair(idx_file(3, [3, 3, 3], range(18)), labels))
    out("idx", "miss_swapped", pair(labels, images))
    out("idx", "miss_gzip_cut", pair(gzip.compress(images, mtime=0)[:-6], labels))
    out("idx", "miss_labels_short", pair(images, idx_file(1, [3], [1, 0, 2])[:-1]))


def npy():
    d = "npy"
    out("npy", "f4_i8", pair(fixture(d, "x_f4.npy"), fixture(d, "y_i8.npy")))
    out("npy", "u1_u1", pair(fixture(d, "x_u1.npy"), fixture(d, "y_u1.npy")))
    out("npy", "f8_f8", pair(fixture(d, "x_f8.npy"), fixture(d, "y_f8.npy")))
    out("npy", "v2_f4_2", pair(fixture(d, "x_f4_v2.npy"), fixture(d, "y_f4_2.npy")))
    out("npy", "miss_fortran", pair(fixture(d, "x_fortran.npy"), fixture(d, "y_i8.npy")))
    x = fixture(d, "x_f4.npy")
    out("npy", "miss_short", pair(x[:-4], fixture(d, "y_i8.npy")))
    out("npy", "miss_header", pair(x.replace(b"'<f4'", b"'>f4'"), fixture(d, "y_i8.npy")))


def safetensors():
    for name in ["torch_dtypes", "torch_state"]:
        out("safetensors", name, fixture(name + ".safetensors"))

    def st(header, data):
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + data

    ok = {"__metadata__": {"step": "3"}, "w": {"dtype": "F32", "shape": [2],
                                               "data_offsets": [0, 8]},
          "b": {"dtype": "U8", "shape": [], "data_offsets": [8, 9]}}
    out("safetensors", "small", st(ok, bytes(9)))
    overlap = dict(ok, b={"dtype": "U8", "shape": [1], "data_offsets": [7, 8]})
    out("safetensors", "miss_overlap", st(overlap, bytes(9)))
    out("safetensors", "miss_dtype", st(dict(ok, w={"dtype": "BF16", "shape": [4],
                                                    "data_offsets": [0, 8]}), bytes(9)))
    out("safetensors", "miss_short", st(ok, bytes(5)))


def multipart():
    # byte 0: bytes written at a time (see fuzz_multipart.c); then Content-Type; then the body
    def body(boundary, parts):
        b = b""
        for name, filename, data in parts:
            b += b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name + b"\""
            if filename:
                b += b"; filename=\"" + filename + b"\"\r\nContent-Type: application/octet-stream"
            b += b"\r\n\r\n" + data + b"\r\n"
        return b + b"--" + boundary + b"--\r\n"

    bnd = b"------------------------d74496d66958873e"
    ct = b"multipart/form-data; boundary=" + bnd + b"\n"
    csv_upload = body(bnd, [(b"name", None, b"reg"), (b"format", None, b"csv"),
                            (b"label_column", None, b"y"),
                            (b"file", b"r.csv", b"x1,y\n1,2\n3,4\n")])
    out("multipart", "csv_whole", b"\xff" + ct + csv_upload)
    out("multipart", "csv_bytewise", b"\x00" + ct + csv_upload)
    idx_upload = body(bnd, [(b"name", None, b"m"), (b"format", None, b"idx"),
                            (b"images", b"i.gz", gzip.compress(idx_file(3, [1, 2, 2], range(4)),
                                                               mtime=0)),
                            (b"labels", b"l.gz", gzip.compress(idx_file(1, [1], [7]), mtime=0))])
    out("multipart", "idx_steps7", b"\x06" + ct + idx_upload)
    out("multipart", "quoted_boundary", b"\x20" + b"multipart/form-data; charset=utf-8; "
        b"boundary=\"a b\"\n" + body(b"a b", [(b"abort", None, b"x"), (b"name", None, b"n")]))
    # near-misses
    out("multipart", "miss_no_boundary", b"\xff" + b"multipart/form-data\n" + csv_upload)
    out("multipart", "miss_cut", b"\x10" + ct + csv_upload[:-40])
    out("multipart", "miss_json", b"\xff" + b"application/json\n" + b'{"name": "x"}')


def http_parse():
    # byte 0: the chunked decoder's piece size (see fuzz_http_parse.c); then a head and a body
    get = "GET /v1/jobs/12/logs?after=5&limit=10 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" \
          "User-Agent: curl/8.5.0\r\nAccept: */*\r\nAuthorization: Bearer tok\r\n\r\n"
    chunked = "POST /v1/jobs HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" \
              "Content-Type: application/json\r\n\r\n"
    heads = {
        "get": get,
        "get_lf": get.replace("\r\n", "\n"),
        "get_leading_crlf": "\r\n\r\n" + get,
        "http10_keepalive": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "post_length": "POST /v1/jobs HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                       "Expect: 100-continue\r\n\r\n{}",
        "query_escapes": "GET /v1/a%2Fb/%7e?k%3D1=v%26w&&plus=a+b&e=&=x HTTP/1.1\r\nHost: h\r\n"
                         "Connection: Upgrade, close\r\n\r\n",
        "obs_text": "GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\u00e9\tx\r\n\r\n",
        # near-misses
        "miss_nul_path": "GET /v1/jobs/7%00x HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_nul_query": "GET /v1/jobs/7/logs?after=1%00 HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_version": "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        "miss_version_garbage": "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
        "miss_spaces": "GET  /  HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_method": "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_method_long": "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_absolute": "GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_target_byte": "GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_long_target": "GET /" + "a" * 8200 + " HTTP/1.1\r\nHost: h\r\n\r\n",
        "miss_fold": "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  more\r\n\r\n",
        "miss_no_colon": "GET / HTTP/1.1\r\nHost: h\r\nX-A 1\r\n\r\n",
        "miss_space_colon": "GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
        "miss_ctl": "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
        "miss_bare_cr": "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        "miss_big_header": "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + "b" * 33000 + "\r\n\r\n",
        "miss_length_sign": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
        "miss_length_big": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808"
                           "\r\n\r\n",
        "miss_length_twice": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                             "Content-Length: 2\r\n\r\n{}",
        "miss_length_and_chunked": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "miss_gzip": "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "miss_te_http10": "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "miss_no_host": "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        "miss_auth_twice": "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\n"
                           "Authorization: Bearer b\r\n\r\n",
        "miss_unended": "GET / HTTP/1.1\r\nHost: h\r\n",
    }
    for name, head in heads.items():
        out("http_parse", name, b"\x00" + head.encode("latin-1"))
    bodies = {
        "chunked": ("\x00", "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"),
        "chunked_pieces7": ("\x06", "a;x=1\r\n0123456789\r\n1 ;y\r\nz\r\n0\r\nX-Sum: 1\r\n\r\n"
                                    "GET / HTTP/1.1\r\n"),
        "chunked_lf_whole": ("\xff", "3\nabc\n0\n\n"),
        "chunked_big_size": ("\x02", "7fffffffffffffff\r\nab"),
        "miss_chunked_hex": ("\x00", "5\r\nhello\r\n0x5\r\n"),
        "miss_chunked_over": ("\x01", "8000000000000000\r\n"),
        "miss_chunked_crlf": ("\x03", "3\r\nhello\r\n0\r\n\r\n"),
        "miss_chunked_trailer": ("\x00", "0\r\n folded\r\n\r\n"),
    }
    for name, (piece, body) in bodies.items():
        out("http_parse", name, (piece + chunked + body).encode("latin-1"))


def http_conn():
    # byte 0: the client's piece size, byte 1: flags (see fuzz_http_conn.c); then the requests
    def flags(half_close=False, stop=False, tick=0, step=0, read=0):
        """tick: every 1, 2, 4 rounds or 3 only when stuck; step: 0.01, 0.4, 3, 9 s;
        read: all, 256, 4096 bytes a round, 3 none until the input ends."""
        return bytes([half_close | stop << 1 | tick << 2 | step << 4 | read << 6])

    def get(target, version="1.1", more=""):
        host = "Host: h\r\n" if version == "1.1" else ""
        return f"GET {target} HTTP/{version}\r\n{host}{more}\r\n"

    def post(target, body, more="", version="1.1"):
        return get(target, version, f"Content-Length: {len(body)}\r\n{more}").replace(
            "GET", "POST", 1) + body

    def chunked(target, chunks, more=""):
        body = "".join(f"{len(c):x}\r\n{c}\r\n" for c in chunks) + "0\r\n\r\n"
        return get(target, more="Transfer-Encoding: chunked\r\n" + more).replace(
            "GET", "POST", 1) + body

    routes = ["/bytes", "/big", "/file", "/short", "/stream", "/streamerr", "/early", "/refuse",
              "/noreply",
              "/nowhere"]
    seeds = {}
    for r in routes:
        seeds["get" + r.replace("/", "_")] = (b"\xff", flags(), get(r))
        seeds["head" + r.replace("/", "_")] = (b"\x10", flags(True), get(r).replace("GET", "HEAD"))
    seeds.update({
        "gone": (b"\xff", flags(), get("/bytes") + get("/gone") + get("/bytes")),
        "post_length": (b"\x07", flags(), post("/bytes", "hello world")),
        "post_chunked": (b"\x03", flags(tick=1), chunked("/bytes", ["hello", ", ", "world"])),
        "post_chunked_ext": (b"\xff", flags(), get("/bytes", more="Transfer-Encoding: chunked\r\n")
                             .replace("GET", "POST", 1) + "5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        "continue": (b"\x00", flags(), post("/bytes", "{}", "Expect: 100-continue\r\n")),
        "continue_http10": (b"\xff", flags(), post("/bytes", "{}", "Expect: 100-continue\r\n",
                                                    "1.0")),
        "early_with_body": (b"\x08", flags(), post("/early", "x" * 40) + get("/bytes")),
        "refuse_length": (b"\x04", flags(), post("/refuse", "y" * 30) + get("/bytes")),
        "refuse_chunked": (b"\x05", flags(), chunked("/refuse", ["abcdef", "ghijkl"])),
        "refuse_short": (b"\xff", flags(), post("/refuse", "small") + get("/bytes")),
        "pipelined": (b"\xff", flags(read=1), get("/bytes") + get("/big") + post("/file", "abc")
                      + get("/stream") + chunked("/nowhere", ["z"]) + get("/bytes")),
        "pipelined_slow_reader": (b"\x81", flags(tick=2, step=1, read=3),
                                  get("/big") * 4 + get("/file") * 2),
        "http10": (b"\xff", flags(), get("/bytes", "1.0")),
        "http10_keepalive": (b"\xff", flags(), get("/big", "1.0", "Connection: keep-alive\r\n")
                             + get("/bytes", "1.0", "Connection: keep-alive\r\n")),
        "http10_stream": (b"\xff", flags(True), get("/stream", "1.0")),
        "http10_streamerr": (b"\xff", flags(), get("/streamerr", "1.0")),
        "close_query": (b"\xff", flags(), get("/bytes?close") + get("/big")),
        "connection_close": (b"\xff", flags(), get("/file", more="Connection: close\r\n")
                             + get("/bytes")),
        "lf_only": (b"\xff", flags(), get("/bytes").replace("\r\n", "\n")),
        "leading_crlf": (b"\xff", flags(), "\r\n\r\n" + get("/bytes")),
        "stream_stop": (b"\xff", flags(stop=True, tick=3), get("/stream")),
        "stream_hangup": (b"\xff", flags(True, tick=3), get("/stream") + get("/bytes")),
        "idle_keepalive": (b"\xff", flags(step=3), get("/bytes")),
        "slow_loris": (b"\x00", flags(step=2), get("/bytes", more="X-Pad: " + "p" * 20 + "\r\n")),
        "body_stalls": (b"\x02", flags(step=3), post("/bytes", "x" * 20)[:-10]),
        "half_close_mid_body": (b"\xff", flags(True), post("/bytes", "x" * 20)[:-5]),
        # near-misses
        "miss_no_host": (b"\xff", flags(), "GET /bytes HTTP/1.1\r\n\r\n" + get("/bytes")),
        "miss_head_no_host": (b"\xff", flags(), "HEAD /bytes HTTP/1.1\r\n\r\n"),
        "miss_version": (b"\xff", flags(), get("/bytes", "2.0") + get("/bytes")),
        "miss_length_body": (b"\xff", flags(), "POST /bytes HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
                             "hello" + get("/bytes")),
        "miss_chunk": (b"\x06", flags(), get("/bytes", more="Transfer-Encoding: chunked\r\n")
                       .replace("GET", "POST", 1) + "5\r\nhelloX\r\n0\r\n\r\n" + get("/bytes")),
        "miss_gzip": (b"\xff", flags(), get("/bytes", more="Transfer-Encoding: gzip\r\n")),
        "miss_unended": (b"\xff", flags(step=2), "GET /bytes HTTP/1.1\r\nHost: h\r\n"),
        "miss_oversized": (b"\xff", flags(), "GET /" + "a" * (128 * 1024)),
    })
    for name, (piece, flag, text) in seeds.items():
        out("http_conn", name, piece + flag + text.encode("latin-1"))


def image():
    # the fixtures' small PNGs and JPEGs: every PNG colour type and depth
    for name in ["grey1.png", "grey4.png", "grey16.png", "grey_alpha8.png", "palette4.png",
                 "rgb8.png", "rgba16.png", "rgb8_adam7.png", "grey.jpg", "colour.jpg",
                 # near-misses (the fixtures' own)
                 "bad_bomb.png", "bad_ihdr_lies.png", "bad_truncated.png",
                 "bad_truncated.jpg"]:
        out("image", name.replace(".", "_"), fixture("images", name))
    jpg = fixture("images", "colour.jpg")
    out("image", "miss_jpeg_cut", jpg[:len(jpg) // 2])
    out("image", "jpeg_empty_scan", jpeg_empty_scan(jpg, 320, 240))


def jpeg_empty_scan(jpg, width, height):
    """jpg's markers up to its scan header, sized width x height, then EOI:
    libjpeg (and PIL) decode it whole, the missing data as grey."""
    at, head = 2, bytearray(jpg[:2])
    while True:
        marker, length = jpg[at + 1], struct.unpack(">H", jpg[at + 2:at + 4])[0]
        seg = bytearray(jpg[at:at + 2 + length])
        if marker in (0xC0, 0xC1, 0xC2):  # SOF: height, then width, after the precision
            seg[5:9] = struct.pack(">HH", height, width)
        head += seg
        at += 2 + length
        if marker == 0xDA:  # SOS: the entropy-coded data would start here
            return bytes(head) + b"\xff\xd9"


def tokens():
    # byte 0: bits 0-4 block_size - 1, bits 5-6 split, bit 7 vocab_size 100 (fuzz_tokens.c)
    raw = struct.pack("<40H", *[(i * 7) % 50 for i in range(40)])
    out("tokens", "raw_all_t4", b"\x03" + raw)
    out("tokens", "raw_train_t8_vocab", b"\xa7" + raw)
    header = struct.pack("<3i", 20240520, 1, 40) + bytes(1024 - 12)
    out("tokens", "llmc_val_t2", b"\x41" + header + raw)
    text = "First Citizen:\r\nBefore we proceed any further, hear me speak.\n\u00e9t\u00e9 " \
           "\u2014 \U0001f600\rAll:\nSpeak, speak.\n"
    out("tokens", "text_all_t8", b"\x07" + text.encode())
    out("tokens", "text_val_half_t3", b"\x62" + text.encode())
    # near-misses
    out("tokens", "miss_odd", b"\x03" + raw[:-1])
    out("tokens", "miss_llmc_count", b"\x01" + struct.pack("<3i", 20240520, 1, 41)
        + bytes(1012) + raw)
    out("tokens", "miss_llmc_version", b"\x01" + struct.pack("<3i", 20240520, 2, 40)
        + bytes(1012) + raw)
    out("tokens", "miss_short_t32", b"\x1f" + raw[:40])
    out("tokens", "miss_vocab", b"\x80" + struct.pack("<4H", 1, 2, 300, 4))
    out("tokens", "miss_utf8_overlong", b"\x00" + b"ab\xc0\xafcd")
    out("tokens", "miss_utf8_surrogate", b"\x00" + b"ab\xed\xa0\x80cd")
    out("tokens", "miss_nul", b"\x00" + b"ab\x00cd")


def cifar10():
    def record(label, seed):
        return bytes([label]) + bytes((seed + i * 13) % 256 for i in range(3072))

    one, two = record(3, 1), record(9, 2) + record(0, 3)
    out("cifar10", "one_two", pair(one, two))
    out("cifar10", "two_empty", pair(two, b""))
    # near-misses
    out("cifar10", "miss_label", pair(one, record(10, 4)))
    out("cifar10", "miss_short", pair(one, two[:-1]))


def archive():
    def tar(entries, mode="w"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as t:
            for name, kind, data in entries:
                info = tarfile.TarInfo(name)
                info.mtime = 0
                if kind == "file":
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
                else:
                    info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                                 "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                    info.linkname = data.decode() if kind in ("symlink", "link") else ""
                    t.addfile(info)
            end = t.offset
        # tarfile pads to 10 KiB records: keep the entries and the two end blocks
        return buf.getvalue()[:end + 1024]

    def zip_(entries):
        buf = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            warnings.simplefilter("ignore")  # the duplicate name is the point of one seed
            for name, kind, data in entries:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                if kind == "symlink":
                    info.external_attr = (0o120777 << 16)
                    info.create_system = 3  # Unix: the mode in external_attr counts
                elif kind == "dir":
                    info.external_attr = (0o40755 << 16) | 0x10
                z.writestr(info, data)
        return buf.getvalue()

    folder = [("cats", "dir", b""), ("cats/1.png", "file", fixture("images", "grey1.png")),
              ("./dogs//2.png", "file", fixture("images", "rgb8.png"))]
    out("archive", "folder_tar", tar(folder))
    out("archive", "folder_tar_gz", gzip.compress(tar(folder), mtime=0))
    out("archive", "folder_zip", zip_(folder))
    # near-misses: each refused by a rule of dataset_archive.h
    out("archive", "miss_dotdot_tar", tar([("a", "file", b"x"), ("../x", "file", b"y")]))
    out("archive", "miss_dotdot_zip", zip_([("a/../../x", "file", b"y")]))
    out("archive", "miss_absolute_tar", tar([("/tmp/x", "file", b"y")]))
    out("archive", "miss_symlink_tar", tar([("l", "symlink", b"/etc"),
                                            ("l/passwd", "file", b"y")]))
    out("archive", "miss_symlink_zip", zip_([("l", "symlink", b".."), ("l/x", "file", b"y")]))
    out("archive", "miss_hardlink_tar", tar([("a", "file", b"x"), ("b", "link", b"a")]))
    out("archive", "miss_fifo_tar", tar([("f", "fifo", b"")]))
    out("archive", "miss_twice_zip", zip_([("a", "file", b"x"), ("a", "file", b"y")]))
    out("archive", "miss_bomb_tar_gz",
        gzip.compress(tar([("zeros", "file", bytes(200 << 10))]), mtime=0))


def json_limits():
    # byte 0: the limits (depth 1..16 in bits 0-3; strings of 4 x 1..16
    # bytes in bits 4-7), then a body as a route gets it
    bodies = [b'{"name": "mlp", "epochs": 2, "optimizer": {"type": "SGD", "lr": 0.1}}',
              b'[[[[1]]]]', b'{"a": "\\"[[[[\\"", "b": [1, {"c": []}]}',
              b'"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"', b'{"k\\"ey": [true, null]}',
              b'[1, 2', b'{"a": "unterminated']
    for i, body in enumerate(bodies):
        out("json_limits", "body%02d" % i, bytes([0x33]) + body)
    out("json_limits", "deep", bytes([0x00]) + b"[" * 40 + b"]" * 40)
    out("json_limits", "long", bytes([0x00]) + b'"' + b"x" * 100 + b'"')


def slurm():
    # byte 0: even, a line of `scontrol show job -o`; odd, a --slurm-config file
    lines = [b"JobId=3 JobName=traind-7 UserId=root(0) Priority=4294901757 JobState=PENDING "
             b"Reason=Resources Dependency=(null) Requeue=1 Restarts=0 ExitCode=0:0\n",
             b"JobId=3 JobState=PENDING Reason=BeginTime Requeue=1 Restarts=1 ExitCode=0:0\n",
             b"JobId=4 JobState=NODE_FAIL Reason=NodeDown Restarts=0 ExitCode=1:9\n",
             b"JobId=5 JobState=RUNNING Reason=None Command=/a b/JobState=COMPLETED\n",
             b"JobId=6 Reason=None\n"]
    for i, line in enumerate(lines):
        out("slurm", "scontrol%02d" % i, b"\x00" + line)
    configs = [b"# the lab's cluster\npartition = a100 \naccount=lab-7\n\n"
               b"gpus_per_node = 4 # HGX\ntime = 1-00:00:00\n",
               b"shared_dir = /shared/traind\ndatasets = fetch\ndatasets_cache = /scratch/c\n"
               b"mpi = pmix\ntraind = /opt/traind/bin/traind\nqos = normal\n",
               b"partition a100\n", b"account = lab 7\n", b"gpus_per_node = many\n",
               b"shared_dir = /" + b"d" * 4300 + b"\n"]
    for i, text in enumerate(configs):
        out("slurm", "config%02d" % i, b"\x01" + text)


def url():
    # byte 0: even, a URL to import; odd, an --import-allow-nets list
    urls = [b"https://u:p@host/a/b?X-Amz-Signature=abc#f", b"http://host:8080/x.csv",
            b"http://a@b@host/x", b"https://[2606:4700::1111]/x", b"http://2130706433/",
            b"http://[::ffff:192.168.1.1]/", b"HTTPS://10.0.0.1/x", b"ftp://u:p@h/x",
            b"user:secret@host/x", b"http://exa mple.com/"]
    for i, u in enumerate(urls):
        out("url", "url%02d" % i, b"\x00" + u)
    nets = [b"127.0.0.2/32,fd00::/8", b"10.0.0.0/8", b"::1", b"10.0.0.0/33", b"1.2.3.4,,5.6.7.8"]
    for i, n in enumerate(nets):
        out("url", "nets%02d" % i, b"\x01" + n)


if __name__ == "__main__":
    for make in [spec, lr_expr, csv, idx, npy, safetensors, multipart, http_parse, http_conn,
                 image, tokens, cifar10, archive, json_limits, slurm, url]:
        make()
