// app.js - the dashboard's start: takes a #token= address's token, signs
// in with GET /v1/me (a form to paste a token when there is none or it is
// refused, with the server's reason), shows who is signed in, and starts
// the runs view (runs.js).

import { api, token, takeTokenFromAddress } from "./api.js";
import { RunsView } from "./runs.js";

// first of all: the token leaves the address bar
takeTokenFromAddress();

const $ = (id) => document.getElementById(id);
let view = null;

function signedIn(me) {
  $("loading").hidden = true;
  $("signin").hidden = true;
  const who = $("who");
  const el = (tag, props) => Object.assign(document.createElement(tag), props);
  who.replaceChildren("Signed in as ", el("strong", { textContent: me.name }));
  if (me.admin) who.append(el("span", { className: "role", textContent: "admin" }));
  who.hidden = false;
  $("signout").hidden = false;
  view = new RunsView(me, (e) => {
    view = null;
    token.clear();
    showSignIn(`This token is no longer valid: ${e.message}`);
  });
  view.start();
}

// the form, with why it is there (a refused token, an unreachable daemon)
function showSignIn(message = "") {
  view?.stop();
  view = null;
  $("loading").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
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
  showSignIn();
});

signIn();
