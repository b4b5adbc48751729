// runs.js - the runs table: GET /v1/jobs every 2 s while the tab is
// visible, filtered by state and user (the API's own ?state= and ?user=)
// and by a name pattern (here), sorted by any column, each row updated in
// place (no jumps, focus kept). One request per refresh: each list item
// carries its progress (and ETA) and its newest value of every metric, so
// the latest loss and val_accuracy need no request of their own. Cancel on
// the user's own runs; a run's name links to its page; a checkbox per row
// picks runs for "Compare (N)" (#/compare, compare.js).

import { api } from "./api.js";
import * as fmt from "./format.js";
import { compareAddress } from "./compare.js";

const REFRESH_MS = 2000;
const LIMIT = 200; // newest jobs asked for; the rest is a filter away
const ACTIVE = new Set(["queued", "running"]);
const COLUMNS = ["id", "name", "user", "state", "device", "progress", "loss", "val_accuracy",
  "started", "duration", "action"];

const $ = (id) => document.getElementById(id);

function fraction(job) {
  const p = job.progress;
  if (job.state === "succeeded") return 1;
  return p && p.total_steps > 0 ? Math.min(1, p.step / p.total_steps) : 0;
}

// a metric's newest value: undefined when the job has none, null when it
// is NaN or infinite (JSON has no word for them)
function latest(metrics, ...names) {
  for (const n of names) if (metrics?.[n]) return metrics[n].value;
  return undefined;
}

// what each column sorts by; null sorts last either way
const SORT_VALUE = {
  id: (r) => r.job.id,
  name: (r) => r.job.name.toLowerCase(),
  user: (r) => r.job.user ?? null,
  state: (r) => r.job.state,
  device: (r) => r.job.device,
  progress: (r) => fraction(r.job),
  loss: (r) => r.loss,
  val_accuracy: (r) => r.valAccuracy,
  started: (r) => r.job.started_at,
  duration: (r) => fmt.secondsBetween(r.job.started_at, r.job.finished_at),
};

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}

export class RunsView {
  // me: GET /v1/me's user; onAuthLost(ApiError): the token stopped working
  constructor(me, onAuthLost) {
    this.me = me;
    this.onAuthLost = onAuthLost;
    this.jobs = [];
    this.more = false;
    this.rows = new Map(); // id -> its <tr>, kept across refreshes
    this.cancelling = new Set();
    this.selected = new Set(); // ids picked to compare
    this.sort = { key: "id", dir: -1 };
    this.busy = false;
    this.stopped = false;
    this.again = false;
    this.timer = 0;
    this.events = new AbortController();
  }

  start() {
    const on = (el, type, fn) => el.addEventListener(type, fn, { signal: this.events.signal });
    for (const id of ["filter-state", "filter-user", "filter-name"]) $(id).value = ""; // not the last user's
    this.matchName = fmt.namePattern("");
    on($("filter-state"), "change", () => this.refresh());
    on($("filter-user"), "change", () => this.refresh());
    on($("filter-name"), "input", () => {
      this.matchName = fmt.namePattern($("filter-name").value);
      this.render();
    });
    on(document, "visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
      else clearTimeout(this.timer);
    });
    this.setUpHeader(on);
    on($("compare-button"), "click", () => {
      location.hash = compareAddress([...this.selected].sort((a, b) => a - b), "");
    });
    this.updateCompare();
    $("filter-user-label").hidden = !this.me.admin;
    if (this.me.admin) this.loadUsers();
    $("runs").hidden = false;
    this.refresh();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.events.abort();
    $("runs-table").tBodies[0].replaceChildren();
    $("runs").hidden = true;
  }

  // each header's text becomes a button that sorts by its column
  setUpHeader(on) {
    for (const th of $("runs-table").tHead.rows[0].cells) {
      const key = th.dataset.key;
      if (!key) continue;
      let button = th.querySelector("button");
      if (!button) {
        button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        button.textContent = th.textContent;
        th.replaceChildren(button);
      }
      on(button, "click", () => {
        this.sort = this.sort.key === key ? { key, dir: -this.sort.dir }
          : { key, dir: key === "id" || key === "started" ? -1 : 1 };
        this.render();
      });
    }
  }

  async loadUsers() {
    try {
      const { users } = await api("GET", "/v1/users");
      const select = $("filter-user");
      select.replaceChildren(select.options[0]);
      for (const u of users) select.add(new Option(u.name, u.name));
    } catch (e) {
      this.status(`users: ${e.message}`);
    }
  }

  // the list (with each job's latest metrics); a refresh asked for while
  // one runs follows it at once (so a filter's change is never lost)
  async refresh() {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    clearTimeout(this.timer);
    try {
      const q = new URLSearchParams({ limit: String(LIMIT) });
      if ($("filter-state").value) q.set("state", $("filter-state").value);
      if (this.me.admin && $("filter-user").value) q.set("user", $("filter-user").value);
      const list = await api("GET", `/v1/jobs?${q}`);
      if (this.stopped) return;
      this.jobs = list.jobs;
      this.more = list.next_cursor !== null;
      this.status("");
      this.render();
    } catch (e) {
      if (e.status === 401) {
        this.stop();
        this.onAuthLost(e);
        return;
      }
      this.status(`${e.message}; trying again`);
    } finally {
      this.busy = false;
      if (!this.stopped && this.again) {
        this.again = false;
        this.refresh();
      } else if (!this.stopped && document.visibilityState === "visible") {
        this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
      }
    }
  }

  status(text) {
    $("runs-status").textContent = text;
  }

  render() {
    const shown = this.jobs.filter((j) => this.matchName(j.name)).map((job) => ({
      job, loss: latest(job.metrics, "loss", "train_loss"), valAccuracy: latest(job.metrics, "val_accuracy"),
    }));
    const { key, dir } = this.sort;
    shown.sort((a, b) => {
      const va = SORT_VALUE[key](a), vb = SORT_VALUE[key](b);
      const nulls = va === null || va === undefined || vb === null || vb === undefined;
      return (nulls ? compare(va, vb) : dir * compare(va, vb)) || b.job.id - a.job.id;
    });
    this.placeRows(shown.map((r) => this.updateRow(r)));
    for (const th of $("runs-table").tHead.rows[0].cells) {
      if (th.dataset.key === key) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    const empty = $("runs-empty");
    empty.hidden = shown.length > 0 && !this.more;
    const older = `filter by state or user to see older ones`;
    empty.textContent = shown.length > 0 ? `The newest ${LIMIT} runs are shown: ${older}.`
      : !this.jobs.length ? "No runs here yet."
        : this.more ? `None of the newest ${LIMIT} runs matches the filters: ${older}.`
          : "No run matches the filters.";
  }

  // the rows in this order, moving none that is already in place (a moved
  // row would lose the keyboard focus)
  placeRows(trs) {
    const body = $("runs-table").tBodies[0];
    const keep = new Set(trs);
    for (const tr of [...body.rows]) if (!keep.has(tr)) tr.remove();
    trs.forEach((tr, i) => {
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] ?? null);
    });
    for (const [id, tr] of this.rows) if (!keep.has(tr)) this.rows.delete(id);
  }

  updateRow({ job, loss, valAccuracy }) {
    const tr = this.rows.get(job.id) ?? this.makeRow(job);
    const c = tr.cells;
    const p = job.progress ?? {};
    const frac = fraction(job);
    tr.dataset.state = job.state;
    tr.dataset.step = String(p.step ?? 0);
    c[1].firstChild.textContent = c[1].title = job.name;
    c[2].textContent = job.user ?? "";
    const badge = c[3].firstChild;
    badge.textContent = job.state;
    badge.className = `badge state-${job.state}`;
    c[4].textContent = job.device ?? "";
    this.updateProgress(c[5], job, p, frac);
    c[6].textContent = fmt.metric(loss);
    c[7].textContent = fmt.metric(valAccuracy);
    c[8].textContent = fmt.started(job.started_at);
    c[8].title = job.started_at ?? "";
    c[9].textContent = fmt.duration(fmt.secondsBetween(job.started_at, job.finished_at));
    this.updateCancel(c[10].firstChild, job);
    return tr;
  }

  makeRow(job) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(job.id);
    for (const col of COLUMNS) {
      const td = tr.insertCell();
      td.className = `col-${col}`;
      if (col === "id") td.append(this.makePick(job));
      if (col === "state") td.append(document.createElement("span"));
      if (col === "name") td.append(Object.assign(document.createElement("a"), { href: `#/jobs/${job.id}` }));
      if (col === "progress") {
        td.innerHTML = '<div class="progress"><div class="bar" role="progressbar" ' +
          'aria-valuemin="0" aria-valuemax="100"><div class="fill"></div></div>' +
          '<span class="ptext"></span></div>';
      }
      if (col === "action") {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "cancel";
        b.addEventListener("click", () => this.cancel(job.id, job.name));
        td.append(b);
      }
    }
    this.rows.set(job.id, tr);
    return tr;
  }

  // the id cell: a checkbox that picks the run to compare, and the id
  makePick(job) {
    const box = Object.assign(document.createElement("input"), { type: "checkbox", className: "pick" });
    box.checked = this.selected.has(job.id);
    box.setAttribute("aria-label", `Pick run ${job.id} (${job.name}) to compare`);
    box.addEventListener("change", () => {
      if (box.checked) this.selected.add(job.id);
      else this.selected.delete(job.id);
      this.updateCompare();
    }, { signal: this.events.signal });
    const label = document.createElement("label");
    label.append(box, ` ${job.id}`);
    return label;
  }

  updateCompare() {
    const n = this.selected.size, b = $("compare-button");
    b.textContent = `Compare (${n})`;
    b.disabled = n < 2;
  }

  updateProgress(td, job, p, frac) {
    const bar = td.querySelector(".bar");
    bar.setAttribute("aria-valuenow", String(Math.round(frac * 100)));
    bar.setAttribute("aria-label", `${job.name}: ${Math.round(frac * 100)}%`);
    bar.firstChild.style.width = `${(frac * 100).toFixed(1)}%`;
    let text = p.total_steps ? `${fmt.count(p.step)} / ${fmt.count(p.total_steps)}` : "";
    td.title = p.total_steps ? `step ${p.step} of ${p.total_steps}` : "";
    if (job.state === "running" && typeof p.eta_s === "number") text += ` · ${fmt.eta(p.eta_s)} left`;
    if (job.state === "queued") text = p.step ? `${text} · waiting` : "waiting";
    td.querySelector(".ptext").textContent = text;
  }

  updateCancel(button, job) {
    const mine = job.owner === this.me.id;
    const cancelling = this.cancelling.has(job.id) && ACTIVE.has(job.state);
    button.hidden = !mine || !ACTIVE.has(job.state);
    button.disabled = cancelling;
    button.textContent = cancelling ? "Cancelling…" : "Cancel";
    button.setAttribute("aria-label", `Cancel run ${job.id} (${job.name})`);
  }

  async cancel(id, name) {
    if (!confirm(`Cancel run ${id} (${name})? It stops at its next step.`)) return;
    this.cancelling.add(id);
    try {
      const job = await api("POST", `/v1/jobs/${id}/cancel`);
      // the reply is the job without its metrics: the row keeps the list's
      this.jobs = this.jobs.map((j) => (j.id === id ? { ...job, metrics: j.metrics } : j));
      this.render();
    } catch (e) {
      this.cancelling.delete(id);
      if (e.status !== 409) this.status(`cancel ${id}: ${e.message}`); // 409: it had ended
    }
    this.refresh();
  }
}
