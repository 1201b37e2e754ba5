/* A sweep's trials on its job page: from the result once the sweep is done (every trial's params,
   metric, model version and error; the best starred), from its children's records while they run. */
"use strict";

(function () {
  const SHOWN_WHILE_RUNNING = 64;  // children read on each refresh of a running sweep's page

  function at(params, path) {
    return path.split(".").reduce((node, key) => (node && typeof node === "object" ? node[key] : undefined), params);
  }
  /* The params paths a sweep varies: its grid's keys or its space's. */
  function paths(record) {
    const p = record.params || {};
    return Object.keys(p.grid || (p.random || {}).space || {});
  }
  const value = (v) => (v === undefined ? "" : JSON.stringify(v));

  /* The ids of the children to read while the sweep runs (none once its result lists the trials). */
  window.sweepChildren = (record) =>
    (record.type === "sweep" && !(record.result || {}).trials ? (record.children || []).slice(0, SHOWN_WHILE_RUNNING) : []);

  /* The trials table; ui carries app.js's helpers (h, short, stateBadge, num, progressBar). */
  window.sweepTrials = function (ui, record, children) {
    const { h, short, stateBadge, num, progressBar } = ui;
    const keys = paths(record);
    const result = record.result || {};
    const jobLink = (id) => (id ? h("a", { href: `#/jobs/${id}` }, short(id)) : "");
    const errorCell = (e) => h("td", { class: "note error" }, e ? `${e.type}: ${e.message}` : "");
    let head, rows;
    if (result.trials) {
      const best = (result.best || {}).index;
      head = ["Trial", "State", ...keys, result.metric, "Model", "Job", "Error"];
      rows = result.trials.map((t) => h("tr", { "data-trial": t.index, class: t.index === best ? "best" : null },
        h("td", {}, t.index === best ? `${t.index} ★ best` : String(t.index)), h("td", {}, stateBadge(t.state)),
        keys.map((k) => h("td", { class: "mono" }, value((t.overrides || {})[k]))),
        h("td", { class: "mono" }, typeof (t.metrics || {})[result.metric] === "number" ? num(t.metrics[result.metric]) : ""),
        h("td", {}, t.version !== null && t.version !== undefined
          ? h("a", { href: `#/models/${encodeURIComponent(t.model)}` }, `${t.model} v${t.version}`) : ""),
        h("td", { class: "mono" }, jobLink(t.job)), errorCell(t.error)));
    } else {
      head = ["Trial", "State", ...keys, "Progress", "Job", "Error"];
      rows = children.map((c, i) => h("tr", { "data-trial": i, "data-job": c.id },
        h("td", {}, String(i)), h("td", {}, stateBadge(c.state)),
        keys.map((k) => h("td", { class: "mono" }, value(at(c.params, k)))),
        h("td", {}, progressBar(c)), h("td", { class: "mono" }, jobLink(c.id)), errorCell(c.error)));
    }
    const total = (record.children || []).length;
    const more = !result.trials && total > children.length ? h("p", { class: "muted" }, `… and ${total - children.length} more trials`) : "";
    const counts = result.trials ? h("p", { class: "muted", id: "trials-summary" },
      `${result.succeeded} succeeded, ${result.failed} failed; ranked by ${result.metric} (${result.mode})`
      + (result.best ? `; best: trial ${result.best.index}, ${result.best.model} v${result.best.version} as alias ${result.best.alias}` : "")) : "";
    if (!rows.length) return h("p", { class: "muted" }, "The trials appear once the sweep has started them.");
    return h("div", {}, counts, h("table", { id: "trials" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)), more);
  };
})();
