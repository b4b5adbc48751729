// format.js - numbers, times and durations as the runs table shows them:
// short, fixed-width friendly, the exact value left for a tooltip.

// seconds -> "42 s", "3 min 05 s", "2 h 07 min"
export function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return "";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
  return `${Math.floor(s / 86400)} d ${pad(Math.floor(s / 3600) % 24)} h`;
}

// a time left, coarser: "42 s", "17 min", "2 h 07 min"
export function eta(s) {
  return s >= 60 && s < 3600 ? `${Math.round(s / 60)} min` : duration(s);
}

// a metric's value: 4 significant digits, exponent form when tiny or
// huge; "NaN" for the API's null (not finite), "" for none
export function metric(v) {
  if (v === undefined) return "";
  if (typeof v !== "number" || !Number.isFinite(v)) return "NaN";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toPrecision(4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

// a step count: exact below 10,000, else "6.1K", "1M"
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
export function count(n) {
  return n < 10000 ? String(n) : compact.format(n);
}

// an ISO time -> "11:40:34" today, "Dec 3 11:40" another day
export function started(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const now = new Date();
  const hm = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (d.toDateString() === now.toDateString())
    return d.toLocaleTimeString(undefined, { ...hm, second: "2-digit" });
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " +
    d.toLocaleTimeString(undefined, hm);
}

// seconds between two ISO times (the second one: now when null)
export function secondsBetween(fromIso, toIso) {
  if (!fromIso) return null;
  const to = toIso ? Date.parse(toIso) : Date.now();
  return (to - Date.parse(fromIso)) / 1000;
}

// a name pattern: a glob when it has * or ?, else a substring; any case
export function namePattern(text) {
  const t = text.trim();
  if (!t) return () => true;
  if (!/[*?]/.test(t)) {
    const low = t.toLowerCase();
    return (name) => name.toLowerCase().includes(low);
  }
  const re = new RegExp("^" + t.replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*").replace(/\?/g, ".") + "$", "i");
  return (name) => re.test(name);
}
