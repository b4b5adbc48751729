// page.js - the chart test page's module: web/chart.js's exports as
// window.chartLib for chart_test.mjs's page.evaluate callbacks, and a
// frame() that resolves after the next animation frame (chart.js draws in
// one, so a frame() after a change sees it drawn).
/* global window, requestAnimationFrame */
import * as chartLib from "/web/chart.js";

window.chartLib = chartLib;
window.frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
