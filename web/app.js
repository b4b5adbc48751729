// app.js - the dashboard's start: takes a #token= address's token (asking
// first where it would replace another user's), signs
// in with GET /v1/me (a form to paste a token when there is none or it is
// refused, with the server's reason), shows who is signed in, and routes
// by the address's fragment: #/jobs/ID a run's page (run.js),
// #/compare?ids=.. runs overlaid (compare.js), #/devices the devices and
// the queue (devices.js), anything else the runs table (runs.js); the one
// shown is stopped on leaving.

import { api, token, tokenFromAddress } from "./api.js";
import { RunsView } from "./runs.js";
import { RunView } from "./run.js";
import { CompareView, compareParams } from "./compare.js";
import { DevicesView } from "./devices.js";

// first of all: the token leaves the address bar
const linkedAtStart = tokenFromAddress();

const $ = (id) => document.getElementById(id);
let view = null;
let me = null;
let offered = null; // the #token= address's token a question waits on

function authLost(e) {
  token.clear();
  showSignIn(`This token is no longer valid: ${e.message}`);
}

// the view the address asks for, the previous one stopped first (and its
// title with it: a run's name stays on no other page)
function route() {
  if (!me) return;
  view?.stop();
  document.title = "traind";
  view = makeView(location.hash);
  view.start();
}

// a #token= address pasted into a tab already open: the token leaves the
// address bar and signs in (useLinked); any other address is a view's
function addressChanged() {
  const linked = tokenFromAddress();
  if (linked === null) route();
  else useLinked(linked);
}

// A #token= address's token. Where another is kept and its user signed in,
// the switch is asked, not done: a link someone sent must not sign this
// browser into their account unnoticed (what it then uploads or submits
// would be theirs). Otherwise it signs in, as a pasted token does.
async function useLinked(linked) {
  const kept = token.get();
  if (linked && kept && linked !== kept) {
    const wasIn = me !== null;
    if (!wasIn) await signIn(); // who is signed in, first
    if (me) {
      if (wasIn) route(); // the address bar's view: the runs
      offerSwitch(linked);
      return;
    }
    if (token.get()) return; // the kept one neither refused nor checked: nothing changes
  }
  if (linked) token.set(linked);
  if (linked || !me) signIn();
  else route();
}

// The question, naming both users: the link's token is looked up first
// (with it alone). The same user's other token (a new one after a
// rotation) is taken without asking; a refused one is said and dropped.
async function offerSwitch(linked) {
  let them;
  try {
    them = await api("GET", "/v1/me", { headers: { Authorization: `Bearer ${linked}` } });
  } catch (e) {
    if (me) ask(`The address's token was not used: ${e.message}. You are still signed in as ${me.name}.`);
    return;
  }
  if (!me) return; // signed out meanwhile
  if (them.id === me.id) {
    token.set(linked);
    return;
  }
  ask(`This address signs in as ${them.name}. You are signed in as ${me.name}.`, linked, them.name);
}

function ask(text, linked = null, name = "") {
  offered = linked;
  $("switch-text").textContent = text;
  $("switch-yes").hidden = !linked;
  $("switch-yes").textContent = `Sign in as ${name}`;
  $("switch-no").textContent = linked ? `Stay signed in as ${me.name}` : "OK";
  $("switch").hidden = false;
}

function closeQuestion() {
  offered = null;
  $("switch").hidden = true;
}

$("switch-yes").addEventListener("click", () => {
  const linked = offered;
  closeQuestion();
  if (!linked) return;
  token.set(linked);
  signIn();
});
$("switch-no").addEventListener("click", closeQuestion);

function makeView(hash) {
  const run = /^#\/jobs\/(\d+)$/.exec(hash);
  if (run) return new RunView(Number(run[1]), authLost);
  if (/^#\/compare(\?|$)/.test(hash)) {
    const { ids, metric } = compareParams(hash);
    return new CompareView(ids, metric, authLost);
  }
  if (hash === "#/devices") return new DevicesView(authLost);
  return new RunsView(me, authLost);
}

function signedIn(user) {
  me = user;
  $("loading").hidden = true;
  $("signin").hidden = true;
  const who = $("who");
  const el = (tag, props) => Object.assign(document.createElement(tag), props);
  who.replaceChildren("Signed in as ", el("strong", { textContent: me.name }));
  if (me.admin) who.append(el("span", { className: "role", textContent: "admin" }));
  who.hidden = false;
  $("signout").hidden = false;
  $("topnav").hidden = false;
  route();
}

// the form, with why it is there (a refused token, an unreachable daemon)
function showSignIn(message = "") {
  view?.stop();
  view = null;
  me = null;
  closeQuestion();
  document.title = "traind";
  $("loading").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("topnav").hidden = true;
  const err = $("signin-error");
  err.textContent = message;
  err.hidden = !message;
  $("signin").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

async function signIn() {
  closeQuestion();
  if (!token.get()) {
    showSignIn();
    return;
  }
  $("signin").hidden = true;
  $("loading").hidden = false;
  try {
    signedIn(await api("GET", "/v1/me"));
  } catch (e) {
    if (e.status === 401) {
      token.clear();
      showSignIn(`This token is not valid: ${e.message}`);
    } else {
      showSignIn(`Cannot sign in: ${e.message}. Reload the page to try again.`);
    }
  }
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  token.set(t);
  signIn();
});

$("signout").addEventListener("click", () => {
  token.clear();
  history.replaceState(null, "", location.pathname + location.search); // the next user starts at the runs
  showSignIn();
});

window.addEventListener("hashchange", addressChanged);
// another tab signed in or out (the token is the origin's, in
// localStorage): this one follows, never showing one user's name over
// another's token
window.addEventListener("storage", (e) => {
  if (e.key === null || e.key === "traind.token") signIn();
});
if (linkedAtStart === null) signIn();
else useLinked(linkedAtStart);
