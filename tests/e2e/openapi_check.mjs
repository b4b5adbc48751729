// tests/e2e/openapi_check.mjs - checks what the daemon answers against
// api-docs/openapi.yaml with a real OpenAPI 3.1 validator: the OpenAPI 3.1
// dialect of @hyperjump/json-schema (pinned in api-docs/package.json), so
// the document cannot drift from the code unnoticed.
//
//   node tests/e2e/openapi_check.mjs --log FILE --owner PID
//
// One long-lived process per e2e script (tests/e2e/lib.sh starts it), on a
// free loopback port, which it prints as {"event":"listening","port":N}.
// Two ways in:
//   POST /check     lib.sh's `api`, after each curl: X-Check-Method,
//                   X-Check-Path (path and query as requested),
//                   X-Check-Status, X-Check-Body (the file curl wrote the
//                   body to); the request body is curl's %{header_json}.
//                   Answers "ok" or the problems, one a line.
//   a forward proxy curl with http_proxy=http://127.0.0.1:PORT (the README
//                   walkthrough, run verbatim): the request goes on to the
//                   daemon on the loopback, its answer comes back unchanged
//                   as it streams, and is checked once it has ended.
//   GET /stats      {"checked": N, "problems": M}
// Each problem is appended to the --log file as one line; lib.sh counts
// them as failures. The process exits once --owner (the test script) has.
//
// A response passes when: its path and method are an operation of the
// document (else it must be the document's x-unmatched-responses: 404 for
// an unknown path, 405 for a known path's other method); its status is
// one the operation documents; its Content-Type is one that status
// documents; the headers the document requires are there and match their
// schemas; a JSON body parses and matches its schema. An event stream or a
// file download is checked for status, type and headers only.
import fs from "node:fs";
import http from "node:http";
import zlib from "node:zlib";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOC_FILE = ROOT + "api-docs/openapi.yaml";
const DOC_URI = "https://traind.invalid/openapi.yaml";
// OpenAPI 3.1's schema of a whole document, and the dialect of the schemas
// in one that names no jsonSchemaDialect (hyperjump's lib/openapi.js does
// the same for a document it reads itself)
const OAS_BASE = "https://spec.openapis.org/oas/3.1/schema-base";
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const BODY_MAX = 64 << 20; // the most of a proxied body kept to check
const USAGE = "usage: openapi_check.mjs --log FILE --owner PID";

// the packages live in api-docs/node_modules (npm ci there)
const requireDocs = createRequire(ROOT + "api-docs/package.json");
const load = async (name) => import(pathToFileURL(requireDocs.resolve(name)).href);
const Schema = await load("@hyperjump/json-schema/openapi-3-1");
await load("@hyperjump/json-schema/formats");
const { addFormat, setFormatHandler } = await load("@hyperjump/json-schema/experimental");
const YAML = (await load("yaml")).default;

// `format` asserts (date-time, uri ...), as a client parsing the value
// would; OpenAPI's int32 and int64 are ranges JSON Schema does not know
Schema.setShouldValidateFormat(true);
for (const bits of [32, 64]) {
    const id = `https://traind.invalid/format/int${bits}`;
    const handler = (v) => typeof v !== "number" ||
        (Number.isInteger(v) && v >= -(2 ** (bits - 1)) && v < 2 ** (bits - 1));
    addFormat({ id, handler });
    setFormatHandler("https://json-schema.org/keyword/draft-2020-12/format", `int${bits}`, id);
}

function parseArgs(argv) {
    const opts = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (!["--log", "--owner"].includes(argv[i]) || argv[i + 1] === undefined)
            throw new Error(`${USAGE} (at '${argv[i]}')`);
        opts[argv[i].slice(2)] = argv[i + 1];
    }
    if (!opts.log || !opts.owner) throw new Error(USAGE);
    return opts;
}

// ------------------------------------------------------------ the document

// "#/a/b" from its keys, escaped for a pointer and for a URI fragment
const pointerOf = (...keys) => "#" + keys.map((k) => "/" + encodeURIComponent(
    String(k).replaceAll("~", "~0").replaceAll("/", "~1"))).join("");

function at(doc, pointer) {
    let v = doc;
    for (const raw of pointer.replace(/^#\/?/, "").split("/").filter((s) => s !== "")) {
        const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
        v = v?.[key];
    }
    return v;
}

// a Response (or Header) object and its pointer, through a local $ref
function deref(doc, pointer) {
    let obj = at(doc, pointer);
    while (obj && typeof obj.$ref === "string") {
        if (!obj.$ref.startsWith("#/"))
            throw new Error(`${pointer}: only local $refs are followed`);
        pointer = "#" + obj.$ref.slice(1).split("/").map(encodeURIComponent).join("/");
        obj = at(doc, pointer);
    }
    if (!obj) throw new Error(`openapi.yaml has nothing at ${pointer}`);
    return { obj, pointer };
}

// path templates as regular expressions, literal paths before templated
// ones (OpenAPI's rule when both match)
function compilePaths(doc) {
    const quote = (s) => s.replace(/[.*+?^$()|[\]\\]/g, "\\$&");
    return Object.keys(doc.paths).map((tpl) => ({
        tpl,
        holes: (tpl.match(/\{/g) || []).length,
        re: new RegExp("^" + tpl.split(/\{[^}]+\}/).map(quote).join("[^/]+") + "$"),
    })).sort((a, b) => a.holes - b.holes);
}

async function loadDocument() {
    const doc = YAML.parse(fs.readFileSync(DOC_FILE, "utf8"));
    const out = await Schema.validate(OAS_BASE, doc, "BASIC");
    if (!out.valid) {
        const where = out.errors.slice(0, 5)
            .map((e) => `${e.instanceLocation}: ${e.absoluteKeywordLocation}`).join("; ");
        throw new Error(`api-docs/openapi.yaml is not a valid OpenAPI 3.1 document: ${where}`);
    }
    Schema.registerSchema(doc, DOC_URI, OAS_BASE);
    return { doc, paths: compilePaths(doc), validators: new Map() };
}

async function validatorFor(api, pointer) {
    let v = api.validators.get(pointer);
    if (!v) {
        v = await Schema.validate(DOC_URI + pointer);
        api.validators.set(pointer, v);
    }
    return v;
}

// '#/metrics/loss/value = null: type "number" (openapi.yaml #/components/...)'
function describe(api, instance, err) {
    const schemaAt = err.absoluteKeywordLocation.slice(DOC_URI.length);
    const keyword = decodeURIComponent(schemaAt.split("/").pop());
    const clip = (s) => (s.length > 80 ? s.slice(0, 77) + "..." : s);
    const want = clip(JSON.stringify(at(api.doc, schemaAt)) ?? "");
    const got = clip(JSON.stringify(at(instance, err.instanceLocation)) ?? "absent");
    const where = `openapi.yaml ${decodeURIComponent(schemaAt)}`;
    return `${err.instanceLocation} = ${got}: ${keyword} ${want} (${where})`;
}

async function checkSchema(api, pointer, value, what) {
    const out = (await validatorFor(api, pointer))(value, "BASIC");
    if (out.valid) return [];
    // the applicators (oneOf, allOf ...) only repeat what their branches say
    const applicator = /\/(allOf|anyOf|oneOf|\$ref)$/;
    const leaves = out.errors.filter((e) => !applicator.test(e.absoluteKeywordLocation));
    const shown = (leaves.length ? leaves : out.errors).slice(0, 4);
    return shown.map((e) => `${what} ${describe(api, value, e)}`);
}

// ------------------------------------------------------------ a response

const mediaType = (ct) => (ct || "").split(";")[0].trim().toLowerCase();
const isJson = (mt) => mt === "application/json" || mt.endsWith("+json");

function matchMedia(content, mt) {
    const keys = Object.keys(content);
    return keys.find((k) => mediaType(k) === mt) ??
        keys.find((k) => k.endsWith("/*") && mt.startsWith(mediaType(k).slice(0, -1))) ??
        keys.find((k) => k === "*/*");
}

// the document's x-unmatched-responses entry for a request that is no
// operation (404: an unknown path, 405: a known path, another method)
// (or one the HTTP layer gives any request before routing it: a path too
// long, headers too large, a NUL in the path: the entries besides 404/405)
function unmatched(api, want, status, why) {
    const whole = ![404, 405].includes(status) &&
        api.doc["x-unmatched-responses"][String(status)] !== undefined;
    if (whole) return { res: deref(api.doc, pointerOf("x-unmatched-responses", status)) };
    if (status !== want) {
        return { problem: `${why}; only its ${want} (x-unmatched-responses) may answer, ` +
            `not ${status}` };
    }
    return { res: deref(api.doc, pointerOf("x-unmatched-responses", want)) };
}

// the Response object that must describe this answer, or a problem
function responseFor(api, method, path, status) {
    const route = api.paths.find((r) => r.re.test(path));
    if (!route) return unmatched(api, 404, status, "no operation has this path");
    const item = api.doc.paths[route.tpl];
    const m = method.toLowerCase();
    if (!item[m]) {
        const allowed = METHODS.filter((x) => item[x]).map((x) => x.toUpperCase()).join(", ");
        return unmatched(api, 405, status, `${route.tpl} takes ${allowed} only`);
    }
    const responses = item[m].responses;
    const key = [String(status), `${String(status)[0]}XX`, "default"].find((k) => responses[k]);
    if (!key) {
        const documented = Object.keys(responses).join(", ");
        return { problem: `status ${status} is not documented for ${method} ${route.tpl} ` +
            `(documented: ${documented})` };
    }
    return { res: deref(api.doc, pointerOf("paths", route.tpl, m, "responses", key)) };
}

async function checkHeaders(api, res, headers) {
    const problems = [];
    for (const name of Object.keys(res.obj.headers || {})) {
        if (name.toLowerCase() === "content-type") continue;
        const h = deref(api.doc, res.pointer + pointerOf("headers", name).slice(1));
        const got = headers[name.toLowerCase()];
        if (got === undefined) {
            if (h.obj.required) problems.push(`header ${name} is required and absent`);
            continue;
        }
        if (!h.obj.schema) continue;
        const value = ["integer", "number"].includes(h.obj.schema.type) ? Number(got) : got;
        problems.push(...await checkSchema(api, h.pointer + "/schema", value, `header ${name}:`));
    }
    return problems;
}

async function checkBody(api, res, mt, key, body) {
    if (!isJson(mt) || body === null) return [];
    let value;
    try {
        value = JSON.parse(body.toString("utf8"));
    } catch (e) {
        const start = JSON.stringify(body.toString("utf8", 0, 120));
        return [`the ${mt} body is not JSON (${e.message}): ${start}`];
    }
    if (!res.obj.content[key].schema) return [];
    const pointer = res.pointer + pointerOf("content", key, "schema").slice(1);
    return checkSchema(api, pointer, value, "body");
}

// headers: lower-case names to strings; body: a Buffer, decoded (null when
// it was too long to keep)
async function checkResponse(api, { method, url, status, headers, body }) {
    // the path as sent, its dot segments kept: the daemon routes "/v1/jobs/../users"
    // as it is (404), where a URL parser would make it /v1/users
    const found = responseFor(api, method, url.replace(/[?#].*$/s, ""), status);
    if (found.problem) return [found.problem];
    const res = found.res;
    const problems = await checkHeaders(api, res, headers);
    const mt = mediaType(headers["content-type"]);
    if (!res.obj.content) {
        if (body?.length)
            problems.push(`${res.pointer} documents no body, got ${body.length} bytes`);
        return problems;
    }
    const key = matchMedia(res.obj.content, mt);
    if (!key) {
        const types = Object.keys(res.obj.content).join(", ");
        problems.push(`Content-Type '${headers["content-type"] ?? ""}' is not one of ${types} ` +
            `(openapi.yaml ${decodeURIComponent(res.pointer)})`);
        return problems;
    }
    problems.push(...await checkBody(api, res, mt, key, body));
    return problems;
}

// ------------------------------------------------------------ the service

function makeRecorder(logFile) {
    const stats = { checked: 0, problems: 0 };
    const record = (r, problems) => {
        stats.checked++;
        if (!problems.length) return;
        stats.problems += problems.length;
        const head = `${r.method} ${r.url} -> ${r.status}`;
        fs.appendFileSync(logFile, problems.map((p) => `${head}: ${p}`.replace(/\n/g, " ") + "\n")
            .join(""));
    };
    return { stats, record };
}

const flatHeaders = (h) => Object.fromEntries(Object.entries(h).map(([k, v]) =>
    [k.toLowerCase(), Array.isArray(v) ? v.join(", ") : String(v)]));

function readAll(stream) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        stream.on("data", (c) => chunks.push(c));
        stream.on("end", () => resolve(Buffer.concat(chunks)));
        stream.on("error", reject);
    });
}

// POST /check from lib.sh's api
async function onCheck(api, rec, req, res) {
    const h = (n) => req.headers[n] ?? "";
    const r = { method: h("x-check-method"), url: h("x-check-path"),
        status: Number(h("x-check-status")) };
    let problems;
    try {
        const headers = flatHeaders(JSON.parse((await readAll(req)).toString("utf8") || "{}"));
        const body = fs.readFileSync(h("x-check-body"));
        problems = await checkResponse(api, { ...r, headers, body });
    } catch (e) {
        problems = [`the check failed: ${e.message}`];
    }
    rec.record(r, problems);
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(problems.length ? problems.join("\n") + "\n" : "ok\n");
}

const HOP_BY_HOP = ["connection", "proxy-connection", "keep-alive", "expect", "te", "upgrade",
    "proxy-authorization"];

// the daemon's answer to the client as it comes, then checked
function relay(api, rec, r, upRes, res) {
    r.status = upRes.statusCode;
    res.writeHead(upRes.statusCode, upRes.rawHeaders);
    const chunks = [];
    let kept = 0;
    upRes.on("data", (c) => {
        res.write(c);
        kept += c.length;
        if (kept <= BODY_MAX) chunks.push(c);
    });
    upRes.on("end", async () => {
        res.end();
        const headers = flatHeaders(upRes.headers);
        try {
            let body = kept <= BODY_MAX ? Buffer.concat(chunks) : null;
            if (body && headers["content-encoding"] === "gzip") body = zlib.gunzipSync(body);
            rec.record(r, await checkResponse(api, { ...r, headers, body }));
        } catch (e) {
            rec.record(r, [`the check failed: ${e.message}`]);
        }
    });
    upRes.on("error", () => res.destroy());
}

// a request for http://127.0.0.1:PORT/... from curl with http_proxy set
function onProxy(api, rec, req, res) {
    const target = new URL(req.url);
    if (!["127.0.0.1", "localhost", "[::1]"].includes(target.hostname)) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`openapi_check proxies to the loopback only, not ${target.hostname}\n`);
        return;
    }
    const headers = { ...req.headers };
    for (const k of HOP_BY_HOP) delete headers[k];
    const r = { method: req.method, url: target.pathname + target.search, status: 0 };
    const host = target.hostname.replace(/^\[|\]$/g, "");
    const to = { host, port: target.port || 80, method: req.method, path: r.url, headers };
    const up = http.request(to, (upRes) => relay(api, rec, r, upRes, res));
    up.on("error", (e) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`openapi_check: ${e.message}\n`);
    });
    // a client that goes away mid-upload: the daemon must see it go too
    req.on("close", () => { if (!req.complete) up.destroy(); });
    req.pipe(up);
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const api = await loadDocument();
    const rec = makeRecorder(opts.log);
    const server = http.createServer({maxHeaderSize: 1 << 20}, (req, res) => {
        if (/^https?:\/\//.test(req.url)) return onProxy(api, rec, req, res);
        if (req.method === "POST" && req.url === "/check") return void onCheck(api, rec, req, res);
        if (req.method === "GET" && req.url === "/stats") {
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end(JSON.stringify(rec.stats) + "\n");
        }
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("POST /check, GET /stats, or a proxied http:// URL\n");
    });
    server.keepAliveTimeout = 60000;
    server.listen(0, "127.0.0.1", () =>
        console.log(JSON.stringify({ event: "listening", port: server.address().port })));
    // gone with the test script that started it
    const owner = Number(opts.owner);
    setInterval(() => {
        try {
            process.kill(owner, 0);
        } catch {
            process.exit(0);
        }
    }, 500);
}

main().catch((e) => {
    console.error(`openapi_check: ${e.message}`);
    process.exit(1);
});
