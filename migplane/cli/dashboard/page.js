// migplane dashboard: polls /state and draws it. Every value from an agent is set
// as text (textContent) or an SVG attribute, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = {migration: "#2b7bb9", management: "#e07b00"};
const LANE_COLOURS = {completed: "#1b7a2f", running: "#2b7bb9", queued: "#9cc3e3",
                      pending: "#cccccc"};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function rate(bytesPerSecond) {
  const mib = bytesPerSecond / 1048576;
  return mib >= 10 ? mib.toFixed(0) + " MiB/s" : mib.toFixed(1) + " MiB/s";
}

// A small chart of each plane's throughput: one polyline per plane.
function chart(planes, width, height) {
  const box = svg("svg", {width: width, height: height, class: "chart",
                          viewBox: "0 0 " + width + " " + height});
  box.appendChild(svg("rect", {x: 0, y: 0, width: width, height: height, fill: "#f4f4f4"}));
  let t0 = Infinity, t1 = -Infinity, top = 1;
  for (const points of Object.values(planes)) {
    for (const [t, v] of points) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); top = Math.max(top, v); }
  }
  const last = {};
  for (const [plane, points] of Object.entries(planes)) {
    if (!points.length) continue;
    const span = Math.max(1e-9, t1 - t0);
    const coords = points.map(([t, v]) =>
      ((t - t0) / span * (width - 2) + 1).toFixed(1) + "," +
      (height - 1 - v / top * (height - 2)).toFixed(1));
    if (coords.length === 1) coords.push(coords[0].replace(/^[^,]*/, String(width - 1)));
    box.appendChild(svg("polyline", {points: coords.join(" "), fill: "none",
                                     stroke: COLOURS[plane] || "#888", "stroke-width": 1.5,
                                     "data-plane": plane}));
    last[plane] = points[points.length - 1][1];
  }
  const title = svg("title", {});
  title.textContent = Object.entries(last).map(([p, v]) => p + " " + rate(v)).join(", ");
  box.appendChild(title);
  return box;
}

function migrationRow(m) {
  const tr = el("tr", {"data-migration-id": m.id, "data-agent": m.agent,
                       "data-status": m.status});
  tr.appendChild(el("td", {class: "guest"}, m.instance));
  tr.appendChild(el("td", {class: "route"}, m.source + " \u2192 " + m.destination));
  tr.appendChild(el("td", {class: "strategy"}, m.strategy || "-"));
  const status = el("td", {class: "status status-" + m.status}, m.status);
  if (m.error) status.setAttribute("title", m.error);
  tr.appendChild(status);
  const progress = el("td", {class: "progress"});
  const bar = el("span", {class: "bar"});
  const fill = el("div", {class: "fill"});
  fill.style.width = Math.max(0, Math.min(100, m.percent)) + "%";
  bar.appendChild(fill);
  progress.appendChild(bar);
  progress.appendChild(el("span", {class: "percent", "data-percent": m.percent},
                          " " + m.percent.toFixed(0) + "%"));
  tr.appendChild(progress);
  const planes = el("td", {class: "planes"});
  planes.appendChild(chart(m.planes || {}, 160, 28));
  // a running migration's current rate; a finished one's peak
  const active = ["pending", "queued", "running"].includes(m.status);
  const shown = Object.entries(m.planes || {}).filter(([, p]) => p.length)
    .map(([plane, p]) => plane + " " + rate(active ? p[p.length - 1][1]
                                                   : Math.max(...p.map(v => v[1]))));
  planes.appendChild(el("div", {class: "muted rates"}, !shown.length ? "not sampled"
                        : (active ? "" : "peak: ") + shown.join(", ")));
  tr.appendChild(planes);
  tr.appendChild(el("td", {class: "downtime", "data-downtime-ms": m.downtime_ms ?? ""},
                    m.downtime_ms === null || m.downtime_ms === undefined
                      ? "-" : m.downtime_ms + " ms"));
  tr.appendChild(el("td", {class: "escalations"},
                    m.escalations.length ? m.escalations.join(", ") : "-"));
  tr.appendChild(el("td", {class: "agent muted"}, m.agent));
  return tr;
}

// An evacuation's timeline: one lane per guest, from its start to its end (a lighter
// bar until its transfer began), the running ones to now.
function evacuationBlock(e) {
  const div = el("div", {class: "evacuation", "data-evacuation-id": e.id,
                         "data-status": e.status});
  div.appendChild(el("div", {class: "heading"},
    "Evacuation " + e.id + " of " + e.source + ": " + e.status + ", " +
    (e.guests_total - e.guests_left) + " of " + e.guests_total + " guests moved, " +
    e.elapsed_s.toFixed(0) + " s"));
  const laneH = 18, labelW = 190, width = 780;
  const span = Math.max(1, e.elapsed_s, ...e.lanes.map(l => l.finished_s || 0));
  const box = svg("svg", {width: width, height: e.lanes.length * laneH + 20,
                          class: "timeline"});
  const x = s => labelW + (s / span) * (width - labelW - 70);
  e.lanes.forEach((lane, i) => {
    const y = i * laneH;
    const g = svg("g", {class: "lane", "data-guest": lane.name, "data-status": lane.status});
    const label = svg("text", {x: 0, y: y + 13, "font-size": 12});
    const full = lane.name + " \u2192 " + (lane.destination || "?");
    label.textContent = full.length > 26 ? full.slice(0, 25) + "\u2026" : full;
    const tip = svg("title", {});
    tip.textContent = full;
    g.appendChild(tip);
    g.appendChild(label);
    if (lane.started_s !== null && lane.started_s !== undefined) {
      const end = lane.finished_s ?? e.elapsed_s;
      const colour = LANE_COLOURS[lane.status] || "#b00020";
      g.appendChild(svg("rect", {x: x(lane.started_s), y: y + 3, height: laneH - 6,
                                 width: Math.max(1, x(end) - x(lane.started_s)),
                                 fill: colour, opacity: 0.35}));
      const from = lane.transfer_s ?? lane.started_s;
      g.appendChild(svg("rect", {x: x(from), y: y + 3, height: laneH - 6,
                                 width: Math.max(1, x(end) - x(from)), fill: colour}));
      const note = svg("text", {x: x(end) + 4, y: y + 13,
                                "font-size": 11, fill: "#555"});
      note.textContent = lane.downtime_ms !== null && lane.downtime_ms !== undefined
        ? lane.downtime_ms + " ms" : lane.percent.toFixed(0) + "%";
      g.appendChild(note);
    }
    box.appendChild(g);
  });
  const axis = svg("text", {x: labelW, y: e.lanes.length * laneH + 14, "font-size": 11,
                            fill: "#777"});
  axis.textContent = "0 s \u2026 " + span.toFixed(0) + " s";
  box.appendChild(axis);
  div.appendChild(box);
  return div;
}

function render(state) {
  document.getElementById("interval").textContent = state.interval || 1;
  document.getElementById("updated").textContent =
    "Last update " + new Date(state.time * 1000).toLocaleTimeString() + ".";
  const agents = document.getElementById("agents");
  agents.replaceChildren(...state.agents.map(a => {
    const span = el("span", {class: a.error ? "error" : "", "data-agent": a.name},
                    a.name + (a.error ? ": " + a.error : ": ok"));
    return span;
  }));
  const body = document.querySelector("#migrations tbody");
  body.replaceChildren(...state.migrations.map(migrationRow));
  document.getElementById("no-migrations").hidden = state.migrations.length > 0;
  const evacuations = document.getElementById("evacuations");
  evacuations.replaceChildren(...state.evacuations.map(evacuationBlock));
  document.getElementById("no-evacuations").hidden = state.evacuations.length > 0;
  document.body.setAttribute("data-polls", state.polls);
}

let pollMs = 1000;

async function poll() {
  try {
    const answer = await fetch("/state", {cache: "no-store"});
    if (answer.ok) {
      const state = await answer.json();
      pollMs = Math.max(200, 1000 * (state.interval || 1));
      render(state);
    }
  } catch (err) {
    document.getElementById("updated").textContent = "The dashboard does not answer: " + err;
  }
  setTimeout(poll, pollMs);
}

poll();
