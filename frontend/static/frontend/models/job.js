"use strict";
// Compression job page: progress, stage and new log lines arrive live over
// ws/models/jobs/<id>/; a status change fetches the page again and swaps in its
// server-rendered parts. When the job has just succeeded that brings the comparison of its
// variants, whose scatter and size charts are drawn here once plotly.js is loaded.
(() => {
  const { jobId, pageUrl, plotlySrc } = document.body.dataset;
  const PARETO_COLOR = "#2458d3";
  const FRONT_COLOR = "rgba(36, 88, 211, 0.45)";
  const DOMINATED_COLOR = "#8a94a1";
  const CONFIG = { displaylogo: false, responsive: true };
  // The page keeps at most this many log lines; the API has the whole log.
  const LOG_LINES = 1000;

  // Plotly reads a subset of HTML in text and hover labels: names pass through this first.
  const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };
  const plain = (text) => String(text).replace(/[&<>]/g, (c) => ENTITIES[c]);

  // Mirrors the `filesize` filter of templatetags/hub_format.py.
  function filesize(bytes) {
    for (const [factor, unit] of [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) {
      const scaled = Number((bytes / factor).toPrecision(3));
      if (Math.abs(scaled) >= 1) return `${scaled < 1000 ? scaled : scaled.toFixed(0)} ${unit}`;
    }
    return `${bytes.toFixed(0)} B`;
  }

  // --- live progress ------------------------------------------------------------------
  function showProgress(fraction, stage) {
    const percent = Math.round(100 * Math.min(Math.max(fraction || 0, 0), 1));
    const bar = document.getElementById("job-progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.firstElementChild.style.width = `${percent}%`;
    document.getElementById("stat-progress").textContent = `${percent} %`;
    if (stage) document.getElementById("job-stage").textContent = stage;
  }

  // The log's lines are stamped by the server; live ones get the same UTC clock here.
  const stamp = () => new Date().toISOString().slice(11, 19);
  const unstamped = (line) => line.replace(/^\d\d:\d\d:\d\d /, "");

  function appendLines(lines) {
    if (!lines.length) return;
    const log = document.getElementById("job-log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const text = lines.map((line) => `${stamp()} ${line}`).join("\n");
    log.textContent = log.textContent ? `${log.textContent}\n${text}` : text;
    const kept = log.textContent.split("\n");
    if (kept.length > LOG_LINES) log.textContent = kept.slice(-LOG_LINES).join("\n");
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // --- resynchronising with the server ------------------------------------------------

  // Lines that arrive while a fetch is out may or may not be in its log: kept here, and
  // appended after the swap unless the fetched log ends with them.
  let inFlight = null;

  async function syncOnce() {
    inFlight = [];
    const response = await fetch(pageUrl, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${pageUrl}: ${response.status}`);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    Triad.swap(fresh, "job-summary");
    Triad.swap(fresh, "log-card");
    const log = document.getElementById("job-log");
    const tail = log.textContent.split("\n").slice(-inFlight.length - 5).map(unstamped);
    appendLines(inFlight.filter((line) => !tail.includes(line)));
    inFlight = null;
    log.scrollTop = log.scrollHeight;
    // The comparison is swapped in once, when the job has just succeeded; a retry that
    // queues it again takes it away.
    const result = fresh.getElementById("result");
    const shown = document.getElementById("result").hasAttribute("data-ready");
    if (result.hasAttribute("data-ready") !== shown) {
      Triad.swap(fresh, "result");
      drawComparison();
    }
  }

  // One fetch at a time; events during a fetch ask for one more after it.
  const resync = Triad.serialised(syncOnce, "job", () => {
    inFlight = null;
  });

  // --- the comparison -------------------------------------------------------------------
  function font() {
    return { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#4a5562" };
  }

  function baseLayout() {
    return {
      font: font(),
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      hovermode: "closest",
    };
  }

  // Pareto-optimal names above their points, the others' below, so that a dominated variant
  // close to an optimal one does not write over its name.
  function markerTrace(rows, name, marker, comparison, textposition) {
    return {
      type: "scatter",
      mode: "markers+text",
      name,
      x: rows.map((r) => r.p50),
      y: rows.map((r) => r.quality),
      text: rows.map((r) => plain(r.name)),
      textposition,
      cliponaxis: false,
      textfont: { size: 11, color: marker.color === PARETO_COLOR ? "#1b44a8" : "#5b6573" },
      customdata: rows.map((r) => [r.p95, plain(r.recipe)]),
      error_x: {
        type: "data", symmetric: false, color: marker.color, thickness: 1.2, width: 0,
        array: rows.map((r) => (r.p95 != null && r.p50 != null ? r.p95 - r.p50 : 0)),
        arrayminus: rows.map(() => 0),
      },
      marker: {
        ...marker,
        symbol: rows.map((r) => (r.original ? "square" : "circle")).map((s) =>
          (marker.open ? `${s}-open` : s)),
      },
      hovertemplate: `<b>%{text}</b><br>${plain(comparison.quality_label)}: %{y:.2f}<br>` +
        "latency p50 %{x:.3g} ms, p95 %{customdata[0]:.3g} ms<extra></extra>",
    };
  }

  // Room above and below the points for their names.
  function paddedRange(values) {
    if (!values.length) return undefined;
    const low = Math.min(...values);
    const high = Math.max(...values);
    const pad = Math.max(0.2 * (high - low), 0.5);
    return [low - pad, high + pad];
  }

  function drawScatter(comparison) {
    const rows = comparison.rows.filter((r) => r.p50 != null && r.quality != null);
    const pareto = rows.filter((r) => r.pareto).sort((a, b) => a.p50 - b.p50);
    const dominated = rows.filter((r) => !r.pareto);
    const traces = [
      {
        type: "scatter", mode: "lines", name: "Pareto front", hoverinfo: "skip",
        x: pareto.map((r) => r.p50), y: pareto.map((r) => r.quality),
        line: { shape: "hv", color: FRONT_COLOR, width: 2, dash: "dot" },
      },
      markerTrace(pareto, "Pareto-optimal", {
        color: PARETO_COLOR, size: 14, line: { color: "#fff", width: 1.5 },
      }, comparison, "top center"),
      markerTrace(dominated, "Dominated", {
        color: DOMINATED_COLOR, size: 12, open: true, line: { width: 2 },
      }, comparison, "bottom center"),
    ];
    const layout = {
      ...baseLayout(),
      margin: { l: 64, r: 24, t: 36, b: 48 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      xaxis: { title: { text: "Latency p50, 1 thread (ms)" }, rangemode: "tozero",
        gridcolor: "#eef1f5", zeroline: false },
      yaxis: { title: { text: plain(comparison.quality_label) }, gridcolor: "#eef1f5",
        range: paddedRange(rows.map((r) => r.quality)) },
    };
    Plotly.newPlot("scatter-chart", traces, layout, CONFIG);
  }

  function drawSizes(comparison) {
    const rows = comparison.rows;
    const trace = {
      type: "bar",
      orientation: "h",
      name: "File size",
      y: rows.map((r) => plain(r.name)),
      x: rows.map((r) => r.size_bytes / 1024),
      text: rows.map((r) => (r.original || r.size_ratio == null
        ? filesize(r.size_bytes) : `${filesize(r.size_bytes)}  ×${r.size_ratio.toFixed(2)} smaller`)),
      textposition: "outside",
      cliponaxis: false,
      marker: { color: rows.map((r) => (r.pareto ? PARETO_COLOR : DOMINATED_COLOR)) },
      hovertemplate: "<b>%{y}</b><br>%{text}<extra></extra>",
    };
    const longest = Math.max(8, ...rows.map((r) => r.name.length));
    const layout = {
      ...baseLayout(),
      margin: { l: 16 + 7 * longest, r: 120, t: 36, b: 48 },
      showlegend: false,
      xaxis: { title: { text: "KiB" }, rangemode: "tozero", gridcolor: "#eef1f5" },
      yaxis: { type: "category", autorange: "reversed", ticksuffix: "  " },
      bargap: 0.35,
    };
    Plotly.newPlot("size-chart", [trace], layout, CONFIG);
  }

  function drawComparison() {
    const source = document.getElementById("comparison-data");
    if (!source || !window.Plotly) return;
    const comparison = JSON.parse(source.textContent);
    drawScatter(comparison);
    drawSizes(comparison);
  }

  Triad.live(`/ws/models/jobs/${jobId}/`, {
    onMessage(message) {
      if (message.type === "progress") {
        showProgress(message.progress, message.stage);
        if (inFlight) inFlight.push(...message.lines);
        else appendLines(message.lines);
      } else {
        resync();
      }
    },
    // Whatever happened before the socket opened, or while it was down.
    onOpen: resync,
  });

  const log = document.getElementById("job-log");
  log.scrollTop = log.scrollHeight;
  // plotly.js is large: loaded once the socket is on its way.
  const plotly = document.createElement("script");
  plotly.src = plotlySrc;
  plotly.onload = drawComparison;
  document.head.append(plotly);
})();
