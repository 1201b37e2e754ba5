/* The bigmodel dashboard: jobs (live), a job's page (params, events, training curves), models, pools.
   Plain DOM, no library; everything it shows comes from the same HTTP API the CLI uses. */
"use strict";

(function () {
  const TOKEN_KEY = "bigmodel.token";
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const view = document.getElementById("view");
  const banner = document.getElementById("banner");
  let stopView = () => {};

  /* ---- small helpers ------------------------------------------------------------------------- */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k.startsWith("data-")) node.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  /* Replace a node's children (nested arrays flattened, empty values skipped). */
  function fill(node, ...children) {
    node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false && c !== "")
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
    return node;
  }
  const short = (id) => (id || "").slice(0, 12);
  function age(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s >= 86400) return `${Math.floor(s / 86400)}d`;
    if (s >= 3600) return `${Math.floor(s / 3600)}h`;
    if (s >= 60) return `${Math.floor(s / 60)}m`;
    return `${Math.floor(s)}s`;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = n, i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return i ? `${v.toFixed(1)} ${units[i]}` : `${v} B`;
  }
  const num = (v) => (typeof v === "number" ? String(+v.toPrecision(4)) : String(v));
  function stateBadge(state) { return h("span", { class: `state state-${state}` }, state); }
  function progressBar(job) {
    const pct = job.state === "succeeded" ? 100 : ((job.progress || {}).percent || 0);
    const fill = h("div");
    fill.style.width = `${Math.min(100, Math.max(0, pct))}%`;
    return h("span", {}, h("span", { class: `bar${job.state === "succeeded" ? " done" : ""}`, "data-percent": pct }, fill),
      h("span", { class: "pct" }, `${Math.round(pct)}%`));
  }
  function mainMetric(metrics) {
    for (const name of ["accuracy", "r2", "mae", "f1_macro", "loss"]) {
      if (metrics && typeof metrics[name] === "number") return `${name} ${num(metrics[name])}`;
    }
    return "";
  }

  /* ---- the token, kept for this browser session only ------------------------------------------ */
  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY) || "",
    set: (v) => (v ? sessionStorage.setItem(TOKEN_KEY, v) : sessionStorage.removeItem(TOKEN_KEY)),
  };
  function showTokenState() {
    const set = !!token.get();
    document.getElementById("token-state").textContent = set ? "token in use" : "";
    document.getElementById("token-forget").hidden = !set;
    document.getElementById("token-input").value = "";
  }
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token.set(document.getElementById("token-input").value.trim());
    showTokenState();
    route();
  });
  document.getElementById("token-forget").addEventListener("click", () => { token.set(""); showTokenState(); route(); });

  /* ---- talking to the API ------------------------------------------------------------------ */
  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }
  function headers(extra) {
    const out = Object.assign({ Accept: "application/json" }, extra || {});
    if (token.get()) out.Authorization = `Bearer ${token.get()}`;
    return out;
  }
  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const response = await fetch(path, opts);
    const body = response.status === 204 ? null : await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, body || {});
    return body;
  }
  function report(error) {
    if (error && error.name === "AbortError") return;
    banner.hidden = false;
    if (error instanceof ApiError && error.status === 401) {
      banner.textContent = token.get() ? "The API refused this token: enter a valid one above."
        : "This API needs a tenant's token: enter it above (it is kept for this browser session only).";
    } else {
      banner.textContent = error instanceof ApiError ? `${error.problem.title || "Error"}: ${error.message}` : `Cannot reach the API: ${error.message}`;
    }
  }
  const clear = () => { banner.hidden = true; banner.textContent = ""; };

  /* Run fn now and every ms until the view changes; a slow answer never overlaps the next call. */
  function every(ms, fn) {
    let stopped = false, timer = null;
    const tick = async () => {
      try { await fn(); clear(); } catch (e) { report(e); }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  /* Server-Sent Events over fetch (so that the Authorization header goes along). */
  async function follow(path, onEvent, signal) {
    const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        const kind = (block.split("\n").find((l) => l.startsWith("event: ")) || "").slice(7);
        if (kind === "end") return;
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  /* ---- pools strip and page --------------------------------------------------------------------- */
  async function readiness() {
    const r = await fetch("/readyz", { headers: headers() });  // with a token, it names the workers
    return r.json();
  }
  function poolStrip(ready) {
    const pools = ready.pools || {}, queues = ready.queues || {}, oldest = ready.oldest_waiting_seconds || {};
    const pills = Object.entries(pools).map(([name, p]) =>
      h("div", { class: "pill", "data-pool": name }, h("b", {}, p.workers_online), `${name} worker${p.workers_online === 1 ? "" : "s"} online (${p.concurrency} processes)`));
    if (!pills.length) pills.push(h("div", { class: "pill" }, h("b", {}, "0"), "workers online: jobs wait until a pool starts"));
    for (const [q, depth] of Object.entries(queues)) {
      if (q === "infer" && !depth) continue;
      pills.push(h("div", { class: "pill", "data-queue": q }, h("b", {}, depth), `waiting on ${q}`,
        depth ? h("span", { class: "muted" }, ` · oldest ${Math.round(oldest[q] || 0)} s`) : null));
    }
    return h("div", { class: "strip" }, pills);
  }

  function poolsView() {
    const body = h("div");
    fill(view, h("h1", {}, "Pools"), h("p", { class: "muted" }, "Workers with a live heartbeat and what waits on each queue."), body);
    return every(3000, async () => {
      const ready = await readiness();
      const pools = Object.entries(ready.pools || {});
      fill(body,
        poolStrip(ready),
        h("h2", {}, "Pools"),
        pools.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Pool", "Workers", "Processes", "Queues"].map((t) => h("th", {}, t)))),
          h("tbody", {}, pools.map(([name, p]) => h("tr", {}, h("td", {}, name), h("td", { class: "mono" }, p.workers ? p.workers.join(", ") : `${p.workers_online} (names need a token)`),
            h("td", {}, p.concurrency), h("td", {}, p.queues.join(", "))))))
          : h("p", { class: "muted" }, "No worker is online. Start one with `bigmodel worker --pool cpu` (or `make run`)."),
        h("h2", {}, "Queues"),
        h("table", {}, h("thead", {}, h("tr", {}, ["Queue", "Waiting", "Oldest waiting"].map((t) => h("th", {}, t)))),
          h("tbody", {}, Object.entries(ready.queues || {}).map(([q, d]) => h("tr", {}, h("td", {}, q), h("td", {}, d),
            h("td", {}, d ? `${Math.round((ready.oldest_waiting_seconds || {})[q] || 0)} s` : "—"))))),
        h("h2", {}, "Checks"),
        h("dl", { class: "kv card" }, Object.entries(ready.checks || {}).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
          (ready.warnings || []).map((w) => [h("dt", {}, "warning"), h("dd", {}, w)])));
    });
  }

  /* ---- jobs ----------------------------------------------------------------------------------- */
  function jobRow(job) {
    const error = job.error ? `${job.error.type}: ${job.error.message}` : null;
    const note = error || (job.waiting ? job.waiting.message : "");
    return h("tr", { "data-job": job.id, "data-state": job.state },
      h("td", { class: "mono" }, h("a", { href: `#/jobs/${job.id}` }, short(job.id))),
      h("td", {}, job.type), h("td", {}, stateBadge(job.state)), h("td", {}, job.queue),
      h("td", { class: "mono" }, job.worker || ""), h("td", {}, progressBar(job)),
      h("td", { title: job.created_at }, age(job.created_at)),
      h("td", { class: `note${error ? " error" : ""}` }, note));
  }

  function jobsView() {
    const filter = h("select", { "aria-label": "state" }, ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s }, s || "all states")));
    const strip = h("div");
    const tbody = h("tbody");
    const empty = h("p", { class: "muted", hidden: true }, "No jobs yet. Submit one: `bigmodel submit ping --wait`.");
    fill(view, h("h1", {}, "Jobs"), strip, h("div", { class: "toolbar" }, filter, h("span", { class: "muted" }, "updates live")),
      h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["Job", "Type", "State", "Queue", "Worker", "Progress", "Age", "Error / waiting"].map((t) => h("th", {}, t)))), tbody), empty);
    let stop = null;
    const start = () => {
      if (stop) stop();
      stop = every(1500, async () => {
        const state = filter.value ? `&state=${filter.value}` : "";
        const [page, ready] = await Promise.all([api(`/v1/jobs?limit=50${state}`), readiness()]);
        fill(strip, poolStrip(ready));
        fill(tbody, ...page.items.map(jobRow));
        empty.hidden = page.items.length > 0;
      });
    };
    filter.addEventListener("change", start);
    start();
    return () => stop && stop();
  }

  /* ---- one job ---------------------------------------------------------------------------------- */
  function epochsFromHistory(record) {
    const history = (record.result && (record.result.history || (record.result.train || {}).history)) || null;
    if (!history) return null;
    const out = new Map();
    for (const [name, values] of Object.entries(history)) values.forEach((v, i) => {
      if (!out.has(i + 1)) out.set(i + 1, {});
      out.get(i + 1)[name] = v;
    });
    return out;
  }
  function charts(epochs) {
    const names = new Set();
    for (const m of epochs.values()) Object.keys(m).forEach((k) => names.add(k));
    const metric = ["accuracy", "mae", "auc", "mse"].find((k) => names.has(k) || names.has(`val_${k}`));
    const series = (keys) => keys.filter((k) => names.has(k)).map((k) => ({
      name: k, points: [...epochs.entries()].filter(([, m]) => typeof m[k] === "number").map(([e, m]) => [e, m[k]]).sort((a, b) => a[0] - b[0]),
    }));
    const figures = [window.lineChart("loss", series(["loss", "val_loss"]), "epoch")];
    if (metric) figures.push(window.lineChart(metric, series([metric, `val_${metric}`]), "epoch"));
    return figures;
  }
  function usageList(u) {
    if (!u) return [];
    const items = [["wall time", `${u.wall_seconds.toFixed(1)} s`], ["CPU time", `${u.cpu_seconds.toFixed(1)} s`],
      ["peak memory (RSS)", bytes(u.peak_rss_bytes)]];
    if (u.peak_gpu_bytes !== undefined) items.push(["peak GPU memory", bytes(u.peak_gpu_bytes)]);
    items.push(["written to the store", bytes(u.store_bytes_written)]);
    return items;
  }
  async function download(jobId, name) {
    try {
      const response = await fetch(`/v1/jobs/${jobId}/artifacts/${encodeURIComponent(name)}`, { headers: headers() });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
      const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name.split("/").pop() });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (e) { report(e); }
  }

  function jobView(jobId) {
    const abort = new AbortController();
    const head = h("div"), details = h("div"), chartBox = h("div", { class: "charts", id: "charts" });
    const eventsBody = h("tbody");
    const epochs = new Map();
    let record = null, refreshing = null, historyUsed = false, children = [];
    const curves = h("div", { hidden: true }, h("h2", {}, "Training curves"), chartBox);
    const trialsBox = h("div");
    fill(view, head, h("div", { class: "grid2" }, details, curves), trialsBox,
      h("h2", {}, "Events"), h("div", { class: "events" }, h("table", { id: "events" }, eventsBody)));

    function render() {
      const r = record;
      fill(head, h("h1", {}, `${r.type} job `, h("span", { class: "mono" }, short(r.id)), " ", stateBadge(r.state)),
        h("p", { class: "muted mono" }, r.id));
      const facts = [["queue", `${r.queue} (priority ${r.priority})`], ["worker", r.worker], ["attempts", r.attempts],
        ["created", r.created_at], ["started", r.started_at], ["finished", r.finished_at], ...usageList(r.usage)];
      const speed = r.result && (r.result.rows_per_second || (r.result.metrics || {}).rows_per_second);
      if (speed) facts.push(["rows/s", num(speed)]);
      fill(details,
        r.waiting ? h("div", { class: "card waiting", id: "waiting" }, h("b", {}, "Waiting: "), r.waiting.message,
          h("div", { class: "muted" }, `reason: ${r.waiting.reason}`)) : "",
        r.error ? h("div", { class: "card error-box", id: "error" }, h("b", {}, `${r.error.type}: `), r.error.message) : "",
        h("dl", { class: "kv card" }, facts.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
          h("dt", {}, "progress"), h("dd", {}, progressBar(r), " ", (r.progress || {}).stage || "")),
        (r.artifacts || []).length ? h("div", { class: "card" }, h("b", {}, "Artifacts"), h("ul", {}, r.artifacts.map((a) =>
          h("li", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); download(r.id, a.name); } }, a.name), ` (${bytes(a.size_bytes)})`)))) : "",
        h("h2", {}, "Params"), h("div", { class: "card" }, h("pre", { class: "mono" }, JSON.stringify(r.params, null, 2))),
        r.result ? [h("h2", {}, "Result"), h("div", { class: "card" }, h("pre", { class: "mono", id: "result" }, JSON.stringify(r.result, null, 2)))] : "");
      fill(trialsBox, r.type === "sweep" ? [h("h2", {}, "Trials"), window.sweepTrials({ h, short, stateBadge, num, progressBar }, r, children)] : "");
      const fromHistory = FINISHED.has(r.state) && epochsFromHistory(r);
      if (fromHistory && !historyUsed) { historyUsed = true; epochs.clear(); fromHistory.forEach((m, e) => epochs.set(e, m)); }
      drawCharts();
    }
    function drawCharts() {
      curves.hidden = !(record && ["train", "pipeline"].includes(record.type));
      if (!epochs.size) {
        fill(chartBox, h("p", { class: "muted" }, "Curves appear after the first epoch."));
        return;
      }
      fill(chartBox, ...charts(epochs));
    }
    async function refresh() {
      record = await api(`/v1/jobs/${jobId}`, { signal: abort.signal });
      children = await Promise.all(window.sweepChildren(record).map((id) => api(`/v1/jobs/${id}`, { signal: abort.signal })));
      render();
    }
    function refreshSoon() {  // at most one refresh in flight, one more queued
      if (refreshing) { refreshing.again = true; return; }
      refreshing = { again: false };
      refresh().catch(report).finally(() => {
        const again = refreshing.again;
        refreshing = null;
        if (again) refreshSoon();
      });
    }
    function onEvent(event) {
      const d = event.data || {};
      if (event.type === "progress" && /(^|\.)epoch$/.test(d.stage || "") && d.current && !historyUsed) {
        epochs.set(d.current, d.metrics || {});
        drawCharts();
      }
      const text = event.type === "progress"
        ? `${d.stage || ""} ${d.current ?? ""}/${d.total ?? ""} ${Object.entries(d.metrics || {}).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k}=${num(v)}`).join(" ")}`
        : event.type === "log" ? d.message : Object.entries(d).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
      eventsBody.prepend(h("tr", { "data-type": event.type }, h("td", { class: "mono muted" }, (event.ts || "").replace("T", " ").replace("Z", "")),
        h("td", {}, event.type), h("td", { class: "mono" }, text)));
      if (event.type !== "log") refreshSoon();
    }
    refresh().then(() => follow(`/v1/jobs/${jobId}/events`, onEvent, abort.signal)).then(refresh).catch(report);
    // A queued job has no events while it waits: read it now and then so that `waiting` stays true.
    const ticker = setInterval(() => { if (record && !FINISHED.has(record.state)) refreshSoon(); }, 3000);
    return () => { abort.abort(); clearInterval(ticker); };
  }

  /* ---- models --------------------------------------------------------------------------------- */
  function modelsView() {
    const body = h("div");
    fill(view, h("h1", {}, "Models"), h("p", { class: "muted" }, "Every model of your tenant, its newest version and the one in production."), body);
    return every(5000, async () => {
      const page = await api("/v1/models");
      fill(body, page.items.length ? h("table", { id: "models" }, h("thead", {}, h("tr", {}, ["Model", "Latest", "Production", "Aliases"].map((t) => h("th", {}, t)))),
        h("tbody", {}, page.items.map((m) => h("tr", {}, h("td", {}, h("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name)),
          h("td", {}, m.latest ?? ""), h("td", {}, m.production ?? "—"),
          h("td", {}, Object.entries(m.aliases || {}).filter(([a]) => a !== "latest").map(([a, v]) => `${a}=v${v}`).join(", "))))))
        : h("p", { class: "muted" }, "No models yet: a train or pipeline job registers one."));
    });
  }

  function modelView(name) {
    const body = h("div");
    fill(view, h("h1", {}, "Model ", h("span", { class: "mono" }, name)), body);
    async function promote(version, alias) {
      try {
        await api(`/v1/models/${encodeURIComponent(name)}/aliases/${alias}`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version }) });
        await load();
      } catch (e) { report(e); }
    }
    async function load() {
      const m = await api(`/v1/models/${encodeURIComponent(name)}`);
      const aliasesOf = (v) => Object.entries(m.aliases).filter(([, n]) => n === v).map(([a]) => a);
      fill(body,
        h("table", { id: "versions" }, h("thead", {}, h("tr", {}, ["Version", "Metrics", "Aliases", "Job", "Created", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, [...m.versions].reverse().map((v) => h("tr", { "data-version": v.version },
            h("td", {}, `v${v.version}`),
            h("td", { class: "mono" }, Object.entries(v.metrics || {}).filter(([, x]) => typeof x === "number").map(([k, x]) => `${k} ${num(x)}`).join(" · ")),
            h("td", {}, aliasesOf(v.version).join(", ")),
            h("td", { class: "mono" }, v.job ? h("a", { href: `#/jobs/${v.job}` }, short(v.job)) : ""),
            h("td", { title: v.created_at }, age(v.created_at)),
            h("td", {}, h("button", { disabled: m.aliases.production === v.version, onclick: () => promote(v.version, "production") },
              m.aliases.production === v.version ? "in production" : "Promote to production")))))),
        m.alias_history.length ? [h("h2", {}, "Alias history"), h("table", {}, h("tbody", {}, [...m.alias_history].reverse().map((e) =>
          h("tr", {}, h("td", {}, e.alias), h("td", {}, `${e.from ? `v${e.from}` : "unset"} → v${e.to}`), h("td", {}, e.by || ""), h("td", { title: e.at }, `${age(e.at)} ago`)))))] : "");
    }
    load().catch(report);
    return () => {};
  }

  /* ---- routing ------------------------------------------------------------------------------------ */
  let authRequired = null;  // from the API's JSON index: does it want a bearer token?
  function tokenView() {
    fill(view, h("h1", {}, "A token, please"),
      h("p", { id: "token-needed" }, "This API serves several tenants: enter your tenant's token above. ",
        "It is kept in this browser tab's session only, and sent with each request as a bearer token."),
      h("p", { class: "muted" }, "The pools page needs no token."));
    return () => {};
  }
  async function route() {
    stopView();
    stopView = () => {};
    clear();
    const parts = (location.hash.replace(/^#\/?/, "") || "jobs").split("/").map(decodeURIComponent);
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0]));
    if (authRequired === null) {
      try {
        authRequired = (await api("/")).auth === "bearer";
      } catch (e) { report(e); return; }
    }
    if (parts[0] === "pools") stopView = poolsView();
    else if (authRequired && !token.get()) stopView = tokenView();
    else if (parts[0] === "jobs" && parts[1]) stopView = jobView(parts[1]);
    else if (parts[0] === "models" && parts[1]) stopView = modelView(parts[1]);
    else if (parts[0] === "models") stopView = modelsView();
    else stopView = jobsView();
  }
  window.addEventListener("hashchange", route);
  showTokenState();
  route();
})();
