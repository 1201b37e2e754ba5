/* Small SVG line charts for training curves: one point per epoch, a few ticks, a legend. No library. */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 440, H = 220, M = { left: 52, right: 14, top: 12, bottom: 34 };

  function el(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function ticks(lo, hi, n) {
    if (lo === hi) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function label(v) {
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e5 || a < 1e-3) ? v.toExponential(1) : String(+v.toPrecision(4));
  }

  /* title: caption; series: [{name, points: [[x, y], ...]}]; xName: the x axis's name. */
  function lineChart(title, series, xName) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.chart = title;
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    figure.appendChild(caption);
    const drawn = series.filter((s) => s.points.length);
    const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
    const ys = drawn.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title });
    figure.appendChild(svg);
    if (!ys.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no points yet";
      return figure;
    }
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
    const axis = el("g", { class: "axis" }, svg);
    for (const t of ticks(y0, y1, 4)) {
      el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t) }, axis);
      el("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" }, axis).textContent = label(t);
    }
    const xTicks = ticks(x0, x1, Math.min(6, x1 - x0)).filter((t) => Number.isInteger(t));
    for (const t of xTicks) {
      el("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle" }, axis).textContent = String(t);
    }
    el("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, axis).textContent = xName;
    el("path", { d: `M${M.left},${M.top} V${H - M.bottom} H${W - M.right}`, fill: "none" }, axis);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const g = el("g", { class: `series s${i % 4}`, "data-series": s.name }, svg);
      const pts = s.points.filter((p) => Number.isFinite(p[1]));
      el("polyline", { points: pts.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" ") }, g);
      for (const p of pts) {
        const dot = el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3 }, g);
        el("title", {}, dot).textContent = `${s.name} at ${xName} ${p[0]}: ${label(p[1])}`;
      }
      const key = document.createElement("span");
      key.className = `s${i % 4}`;
      key.textContent = s.name;
      legend.appendChild(key);
    });
    figure.appendChild(legend);
    return figure;
  }

  window.lineChart = lineChart;
})();
