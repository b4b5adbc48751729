// app.js - the dashboard's start: takes a #token= address's token, signs
// in with GET /v1/me (a form to paste a token when there is none or it is
// refused, with the server's reason), shows who is signed in, and routes
// by the address's fragment: #/jobs/ID a run's page (run.js),
// #/compare?ids=.. runs overlaid (compare.js), #/devices the devices and
// the queue (devices.js), anything else the runs table (runs.js); the one
// shown is stopped on leaving.

import { api, token, takeTokenFromAddress } from "./api.js";
import { RunsView } from "./runs.js";
import { RunView } from "./run.js";
import { CompareView, compareParams } from "./compare.js";
import { DevicesView } from "./devices.js";

// first of all: the token leaves the address bar
takeTokenFromAddress();

const $ = (id) => document.getElementById(id);
let view = null;
let me = null;

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
// address bar and signs in; any other address is a view's
function addressChanged() {
  if (takeTokenFromAddress()) signIn();
  else route();
}

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
signIn();
