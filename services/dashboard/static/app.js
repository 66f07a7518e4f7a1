// Marquee dashboard: polls /api/state and redraws numbers, tables and charts in place.
// Every value from the server goes into the page as text (textContent), never as HTML:
// dead-letter reasons and generated articles are untrusted input.
"use strict";

const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff9bce", "#e3b341"];
const charts = {};
let refreshMs = 2000;
let lastState = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return Number(value).toFixed(Number.isInteger(value) ? 0 : digits);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${(value * 1000).toFixed(0)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${(value / 60).toFixed(1)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

function retention(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 0) return "forever";
  const days = ms / 86400000;
  return days >= 1 ? `${fmt(days, 1)} d` : `${fmt(ms / 3600000, 1)} h`;
}

function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function badge(status, tone = status) { return el("span", { class: `status ${tone}` }, status); }

// -- charts ---------------------------------------------------------------------------------
function lineChart(id, yTitle) {
  if (typeof Chart === "undefined") return null;
  if (charts[id]) return charts[id];
  charts[id] = new Chart($(id), {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
      scales: {
        x: { type: "linear", title: { display: true, text: "seconds ago" },
             ticks: { callback: (v) => `${Math.round(-v)}` }, grid: { color: "#263241" } },
        y: { beginAtZero: true, title: { display: true, text: yTitle }, grid: { color: "#263241" } },
      },
      plugins: { legend: { labels: { color: "#dce3ea", boxWidth: 12 } } },
      color: "#dce3ea",
    },
  });
  return charts[id];
}

function setSeries(chart, series, now) {
  if (!chart) return;
  chart.data.datasets = series.map((s, i) => ({
    label: s.label,
    data: s.points.filter((p) => p[1] !== null && p[1] !== undefined)
      .map((p) => ({ x: p[0] - now, y: p[1] })),
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
  }));
  chart.options.scales.x.min = -(lastState ? lastState.history_seconds : 300);
  chart.options.scales.x.max = 0;
  chart.update("none");
}

function qualityChart(versions) {
  if (typeof Chart === "undefined") return;
  const ordered = [...versions].reverse();
  const labels = ordered.map((v) => `v${v.id}`);
  const metric = (name, side) => ordered.map((v) => (v.quality[name] || {})[side]);
  const data = {
    labels,
    datasets: [
      { label: "P@10 model", data: metric("precision@10", "model"), backgroundColor: PALETTE[0] },
      { label: "P@10 popularity", data: metric("precision@10", "popularity"), backgroundColor: "#35506e" },
      { label: "NDCG@10 model", data: metric("ndcg@10", "model"), backgroundColor: PALETTE[1] },
      { label: "NDCG@10 popularity", data: metric("ndcg@10", "popularity"), backgroundColor: "#2c5a37" },
    ],
  };
  if (!charts.quality) {
    charts.quality = new Chart($("chart-quality"), {
      type: "bar",
      data,
      options: { animation: false, maintainAspectRatio: false, color: "#dce3ea",
        scales: { y: { beginAtZero: true, grid: { color: "#263241" } } },
        plugins: { legend: { labels: { color: "#dce3ea", boxWidth: 12 } } } },
    });
  } else {
    charts.quality.data = data;
    charts.quality.update("none");
  }
}

// -- panels ---------------------------------------------------------------------------------
function renderSources(state) {
  for (const name of ["kafka", "postgres"]) {
    const source = state.sources[name];
    const pill = $(`source-${name}`);
    pill.className = `pill ${source.ok ? "ok" : "bad"}`;
    pill.title = source.error || `sampled ${source.last_ok_seconds_ago} s ago`;
  }
  const errors = Object.entries(state.sources).filter(([, s]) => s.error).map(([n, s]) => `${n}: ${s.error}`);
  if (typeof Chart === "undefined") {
    errors.push("charts are off: the charting library is not installed (run `npm ci --prefix services/dashboard`, or make setup)");
  }
  $("banner").hidden = errors.length === 0;
  $("banner").textContent = errors.join(" · ");
  $("updated").textContent = `updated ${new Date(state.generated_at * 1000).toLocaleTimeString()}`;
  document.body.dataset.generatedAt = String(state.generated_at);
}

function renderOverview(state) {
  const overview = state.overview;
  const throughput = overview.throughput || {};
  const rates = Object.values(throughput).map((t) => t.events_per_second || 0);
  $("kpi-events").textContent = rates.length ? fmt(rates.reduce((a, b) => a + b, 0)) : "–";
  const interactions = throughput.interactions;
  $("kpi-interactions").textContent = interactions ? fmt(interactions.events_per_second) : "–";
  const alive = overview.instances.filter((i) => i.state !== "missing").length;
  $("kpi-instances").textContent = `${alive} / ${overview.instances.length}`;
  $("kpi-dead-letters").textContent = fmt(overview.dead_letters.reduce((a, d) => a + d.count, 0));

  const active = Object.entries(throughput).filter(([, t]) => t.series.some((p) => p[1] > 0));
  setSeries(lineChart("chart-throughput", "events/s"),
    active.map(([topic, t]) => ({ label: topic, points: t.series })), state.generated_at);

  fill($("instances").tBodies[0], overview.instances.length ? overview.instances.map((i) => el("tr",
    { "data-instance": i.instance },
    el("td", {}, i.service), el("td", {}, i.instance), el("td", {}, badge(i.state)),
    el("td", { class: "num" }, seconds(i.age_seconds)), el("td", {}, i.version),
    el("td", { class: "small-list" }, Object.entries(i.counters).map(([k, v]) => `${k} ${fmt(v)}`).join(", "))))
    : [el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No heartbeats on ops.heartbeats yet."))]);

  fill($("dead-letters").tBodies[0], overview.dead_letters.map((d) => el("tr", { "data-dlq": d.topic },
    el("td", {}, d.topic), el("td", { class: "num" }, fmt(d.count)),
    el("td", {}, d.latest.length ? el("ul", { class: "reasons" }, ...d.latest.slice(0, 3).map((l) => el("li", {},
      `${l.error}`, el("span", { class: "muted" },
        ` — ${l.service || "?"}, ${l.source_topic || ""}[${l.source_partition ?? "?"}]@${l.source_offset ?? "?"}, ${when(l.failed_at)}`))))
      : el("span", { class: "muted" }, "none")))));
}

function renderLag(state) {
  const lag = state.lag;
  $("lag-window").textContent = lag.window;
  const series = [];
  const secondSeries = [];
  for (const group of lag.groups) {
    for (const topic of group.topics) {
      const label = `${group.group} · ${topic.topic}`;
      series.push({ label, points: topic.series.map((p) => [p[0], p[1]]) });
      secondSeries.push({ label, points: topic.series.map((p) => [p[0], p[2]]) });
    }
  }
  setSeries(lineChart("chart-lag", "messages"), series, state.generated_at);
  setSeries(lineChart("chart-lag-seconds", "seconds"), secondSeries, state.generated_at);

  const container = $("lag-groups");
  if (!lag.groups.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No consumer group reads Marquee topics yet."));
    return;
  }
  container.replaceChildren(...lag.groups.map((group) => el("div", { class: "group", "data-group": group.group },
    el("h3", {}, `${group.group} `, badge(group.status),
      el("span", { class: "muted" }, ` ${group.state}, ${group.members} member(s)`)),
    el("table", { class: "lag-table" },
      el("thead", {}, el("tr", {}, ...["topic", "partition", "committed", "end", "lag (messages)", "lag (seconds)", "status", "why"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, ...group.topics.flatMap((topic) => topic.partitions.map((p) => el("tr",
        { "data-topic": topic.topic, "data-partition": p.partition, "data-status": p.status },
        el("td", {}, topic.topic), el("td", { class: "num" }, p.partition),
        el("td", { class: "num" }, fmt(p.committed)), el("td", { class: "num" }, fmt(p.end)),
        el("td", { class: "num lag-messages" }, fmt(p.lag)),
        el("td", { class: "num lag-seconds" }, p.lag_seconds === null ? "–" : `${p.lag_seconds_lower_bound ? "≥ " : ""}${seconds(p.lag_seconds)}`),
        el("td", {}, badge(p.status)), el("td", { class: "muted" }, p.reason)))))))));
}

function renderRecommender(state) {
  const rec = state.recommender;
  const active = rec.active;
  $("rec-active").textContent = active ? `v${active.id}` : "none yet";
  $("rec-trained").textContent = active ? when(active.trained_at) : "run `marquee train`";
  $("rec-counts").textContent = rec.counts
    ? `${fmt(rec.counts.users)} / ${fmt(rec.counts.items)} / ${fmt(rec.counts.interactions)}` : "–";
  $("rec-fit").textContent = active ? fmt(active.fit_seconds, 2) : "–";
  const quality = (v, name, side) => fmt((v.quality[name] || {})[side], 3);
  fill($("versions").tBodies[0], rec.versions.length ? rec.versions.map((v) => el("tr", { "data-version": v.id },
    el("td", {}, `v${v.id}`), el("td", {}, badge(v.status, v.status === "active" ? "OK" : v.status === "rejected" ? "WARN" : "UNKNOWN")),
    el("td", {}, when(v.trained_at)),
    el("td", { class: "num" }, quality(v, "precision@10", "model")), el("td", { class: "num muted" }, quality(v, "precision@10", "popularity")),
    el("td", { class: "num" }, quality(v, "ndcg@10", "model")), el("td", { class: "num muted" }, quality(v, "ndcg@10", "popularity")),
    el("td", { class: "num" }, fmt(v.fit_seconds, 2))))
    : [el("tr", {}, el("td", { colspan: 8, class: "empty" }, "No model trained yet (`marquee train`)."))]);
  qualityChart(rec.versions);
}

function renderGenerator(state) {
  const gen = state.generator;
  const pct = gen.percentiles;
  const pair = (name, format) => (pct && pct[name] && pct[name].n
    ? `${format(pct[name].p50)} / ${format(pct[name].p95)}` : "–");
  $("gen-queue").textContent = fmt(gen.queue_depth);
  $("gen-batch").textContent = fmt(gen.batch_size);
  $("gen-ttft").textContent = pair("time_to_first_token_seconds", seconds);
  $("gen-tps").textContent = pair("tokens_per_second", (v) => fmt(v, 1));
  $("gen-latency").textContent = pair("latency_seconds", seconds);
  const ok = gen.totals.ok || { all: 0, last_hour: 0 };
  const error = gen.totals.error || { all: 0, last_hour: 0 };
  $("gen-errors").textContent = `${fmt(ok.all)} / ${fmt(error.all)} (${fmt(error.last_hour)})`;

  const notes = [];
  if (!gen.instances.length) notes.push("No generator instance is sending heartbeats.");
  if (!gen.latest.length) notes.push("No generated content yet: pieces appear here once the generator stores its replies.");
  $("gen-empty").textContent = notes.join(" ");
  $("gen-empty").hidden = notes.length === 0;

  setSeries(lineChart("chart-generator", "count"), [
    { label: "queue depth", points: gen.series.map((p) => [p[0], p[1]]) },
    { label: "batch size", points: gen.series.map((p) => [p[0], p[2]]) },
  ], state.generated_at);

  $("gen-latest").replaceChildren(...gen.latest.map((piece) => el("div", { class: "piece", "data-request": piece.request_id },
    el("div", { class: "meta" }, badge(piece.status), ` ${piece.kind} · ${piece.model} · ${when(piece.created_at)} · `,
      `latency ${seconds(piece.latency_seconds)}, first token ${seconds(piece.ttft_seconds)}, ${fmt(piece.tokens_per_second)} tokens/s`),
    el("div", { class: "prompt" }, piece.prompt),
    el("div", { class: "text" }, piece.status === "ok" ? piece.text : `error: ${piece.error}`))));
}

// CTR of each group as a line, its 95% interval as a shaded band (high filled down to low).
function ctrChart(groups, now) {
  const chart = lineChart("chart-ctr", "CTR (clicked slots / slots shown)");
  if (!chart) return;
  const xy = (points, index) => points.filter((p) => p[index] !== null)
    .map((p) => ({ x: p[0] - now, y: p[index] }));
  chart.data.datasets = groups.flatMap((g, i) => {
    const color = PALETTE[i % PALETTE.length];
    return [
      { label: g.label, data: xy(g.series, 1), borderColor: color, backgroundColor: color },
      { label: `${g.label} 95% high`, data: xy(g.series, 3), borderColor: "transparent",
        backgroundColor: `${color}33`, fill: "+1", pointRadius: 0, band: true },
      { label: `${g.label} 95% low`, data: xy(g.series, 2), borderColor: "transparent",
        backgroundColor: "transparent", fill: false, pointRadius: 0, band: true },
    ];
  });
  chart.options.plugins.legend.labels.filter = (item, data) => !data.datasets[item.datasetIndex].band;
  chart.options.scales.x.min = -(lastState ? lastState.history_seconds : 300);
  chart.options.scales.x.max = 0;
  chart.update("none");
}

function positionChart(curves) {
  if (typeof Chart === "undefined") return;
  const data = { datasets: curves.map((c, i) => ({
    label: c.label,
    data: c.points.filter((p) => p.ctr !== null).map((p) => ({ x: p.position, y: p.ctr })),
    borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
  })) };
  if (!charts.positions) {
    charts.positions = new Chart($("chart-positions"), {
      type: "line", data,
      options: { animation: false, parsing: false, maintainAspectRatio: false, color: "#dce3ea",
        elements: { point: { radius: 3 }, line: { borderWidth: 2 } },
        scales: { x: { type: "linear", title: { display: true, text: "position" }, ticks: { stepSize: 1 }, grid: { color: "#263241" } },
                  y: { beginAtZero: true, title: { display: true, text: "CTR" }, grid: { color: "#263241" } } },
        plugins: { legend: { labels: { color: "#dce3ea", boxWidth: 12 } } } },
    });
  } else {
    charts.positions.data = data;
    charts.positions.update("none");
  }
}

function renderFeedback(state) {
  const fb = state.feedback;
  const ratio = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(2)}%`);
  $("fb-lists").textContent = fmt(fb.lists_per_second, 2);
  $("fb-window").textContent = fb.window_seconds ? seconds(fb.window_seconds) : "–";
  $("fb-organic").textContent = fmt(fb.organic_clicks);
  const notes = [];
  if (fb.source.error) notes.push(`Feedback service: ${fb.source.error}`);
  else if (!fb.groups.length) notes.push("No impressions in the window yet: lists appear here once the feedback service has stored them.");
  $("fb-empty").textContent = notes.join(" ");
  $("fb-empty").hidden = notes.length === 0;
  fill($("fb-table").tBodies[0], fb.groups.map((g) => {
    const c = g.current || {};
    return el("tr", { "data-group": `${g.model_version}|${g.strategy}|${g.surface}` },
      el("td", {}, g.model_version === null ? "–" : `v${g.model_version}`), el("td", {}, g.strategy), el("td", {}, g.surface),
      el("td", { class: "num" }, fmt(c.lists)), el("td", { class: "num" }, fmt(c.impressions)),
      el("td", { class: "num" }, fmt(c.clicks)), el("td", { class: "num fb-ctr" }, ratio(c.ctr)),
      el("td", { class: "num muted" }, c.ci95 ? `${ratio(c.ci95[0])} – ${ratio(c.ci95[1])}` : "–"));
  }));
  ctrChart(fb.groups, state.generated_at);
  positionChart(fb.positions);
  setSeries(lineChart("chart-lists", "lists/s"), [
    { label: "lists served (impressions topic)", points: fb.lists_series },
  ], state.generated_at);
}

function renderTopics(state) {
  fill($("topic-table").tBodies[0], state.topics.map((t) => el("tr", { "data-topic": t.topic },
    el("td", {}, t.topic, t.is_dlq ? el("span", { class: "muted" }, " (DLQ)") : null),
    el("td", { class: "num" }, t.partitions), el("td", { class: "num" }, t.replication),
    el("td", {}, retention(t.retention_ms)), el("td", {}, t.cleanup_policy || "–"),
    el("td", { class: "num" }, fmt(t.messages)), el("td", { class: "num topic-rate" }, fmt(t.events_per_second)),
    el("td", { class: "small-list" }, t.end_offsets.map((e) => fmt(e)).join(" · ")))));
}

function render(state) {
  lastState = state;
  refreshMs = Math.max(500, state.refresh_seconds * 1000);
  renderSources(state);
  for (const panel of [renderOverview, renderLag, renderRecommender, renderGenerator, renderFeedback, renderTopics]) {
    try { panel(state); } catch (err) { console.error(panel.name, err); }
  }
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("unauthorized"); }
  return response.json();
}

async function poll() {
  try {
    render(await getJson("/api/state"));
  } catch (err) {
    $("updated").textContent = `dashboard unreachable: ${err.message}`;
  } finally {
    setTimeout(poll, refreshMs);
  }
}

// An item by its catalog title, its id beside it; the id alone when the catalog has no title.
const named = (item) => (item.title ? `${item.title} (${item.item_id})` : item.item_id);

async function explore(event) {
  event.preventDefault();
  const user = $("explorer-user").value.trim();
  if (!user) return;
  $("explorer-status").textContent = "loading…";
  try {
    const body = await getJson(`/api/users/${encodeURIComponent(user)}?k=10`);
    if (body.error) { $("explorer-status").textContent = body.error; return; }
    $("explorer-status").textContent = "";
    $("explorer-result").hidden = false;
    const history = body.history;
    $("explorer-history-total").textContent = history.error ? history.error : `(${fmt(history.total)} interactions)`;
    fill($("explorer-history").tBodies[0], (history.events || []).map((e) => el("tr", {},
      el("td", {}, when(e.occurred_at)), el("td", {}, named(e)),
      el("td", {}, e.action), el("td", { class: "num" }, fmt(e.rating)))));
    const recs = body.recommendations;
    $("explorer-strategy").textContent = recs.error ? recs.error : `(${recs.strategy}, model v${recs.model_version ?? "–"})`;
    fill($("explorer-recs").tBodies[0], (recs.items || []).map((item, i) => el("tr", { "data-item": item.item_id },
      el("td", { class: "num" }, i + 1), el("td", {}, named(item)),
      el("td", {}, item.kind || "–"), el("td", { class: "num" }, Number(item.score).toFixed(4)))));
  } catch (err) {
    $("explorer-status").textContent = `failed: ${err.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("explorer-form").addEventListener("submit", explore);
  poll();
});
