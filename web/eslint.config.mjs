// eslint.config.mjs - eslint's flat config for the dashboard's JS (make
// lint-web, run from the repository's root with --config): the recommended
// rules; browser globals for the page (web/*.js), node's and the
// browser's for its test and bench drivers (tests/e2e/dashboard.mjs,
// tests/e2e/run_page.mjs, bench/dashboard.mjs, whose callbacks run in the
// page); unused disable comments are errors and make lint-web fails on any
// warning. An .mjs file, so that the Makefile's
// web/*.js (what the daemon embeds and serves) leaves it out.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["**/node_modules/"] },
  js.configs.recommended,
  {
    files: ["web/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    files: ["tests/e2e/dashboard.mjs", "tests/e2e/run_page.mjs", "bench/dashboard.mjs"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.node, ...globals.browser },
    },
  },
  { linterOptions: { reportUnusedDisableDirectives: "error" } },
];
