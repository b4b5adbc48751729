#!/usr/bin/env bash
# test_chart.sh - the dashboard's chart (web/chart.js, web/chart.css) in a
# real browser: tests/e2e/chart_test/chart_test.mjs serves web/ and the
# test page (tests/e2e/chart_test/index.html) under the daemon's
# Content-Security-Policy and drives Debian's chromium, headless, through
# puppeteer-core. No daemon: the chart alone, with known points.
#
#   tests/e2e/test_chart.sh
#
# Covers: data-points after setSeries (one series, two, a zoom, log y);
# smooth() against the test's own debiased EMA; the readout by keys and
# hover; Tab in and out of the plot; drag to zoom (onZoom(x0, x1)) and a
# double-click's reset (onZoom(null)); log y skipping non-positive values;
# the light and the dark theme's colours on the canvas; a resize at pixel
# ratio 2; destroy; no console error. Prints the draw time of 150,000
# points (not asserted). Screenshots: build/screenshots/chart-light.png,
# chart-dark.png. Skips when /usr/bin/chromium (or $CHROMIUM) is absent.
#
# Needs node and npm (npm ci in web/ runs when its node_modules is missing
# or older than package-lock.json). Ends with "N passed, N failed, N
# skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SHOTS=${SHOTS:-build/screenshots}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

if ! browser_ready "the chart in a browser"; then
    summary
    exit
fi
browser_checks tests/e2e/chart_test/chart_test.mjs 90
summary
