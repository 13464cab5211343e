"use strict";
// Job page, succeeded job: the Pareto front (2D or 3D scatter, or parallel coordinates) with
// every baseline marked, and the chosen solution's Gantt chart, its comparison with the
// baselines and the lower bounds, and the form that proposes it. job.js calls `init` once
// plotly.js is loaded and the result is on the page.
const TriadFront = (() => {
  const ZERO = "00000000-0000-0000-0000-000000000000";
  const FRONT_COLOR = "#2458d3";
  const KNEE_COLOR = "#f79009";
  const BOUND_COLOR = "#8a94a1";
  const BASELINE_STYLES = [
    // 2D symbol, 3D symbol (scatter3d knows only a few), colour
    ["diamond", "diamond", "#b42318"],
    ["square", "square", "#7a5af8"],
    ["triangle-up", "cross", "#0e9384"],
    ["pentagon", "x", "#c11574"],
    ["hexagon", "diamond-open", "#5b6573"],
    ["star-triangle-up", "square-open", "#dc6803"],
  ];
  const KIND_COLORS = ["#2458d3", "#17803d", "#e07b00", "#9b51e0", "#0e9384", "#c11574",
    "#b42318", "#5b6573", "#6ea8ff", "#5ad39a", "#ffc25c", "#a48afb"];
  const TIER_ORDER = { cloud: 0, edge: 1, end: 2 };
  const CONFIG = { displaylogo: false, responsive: true };

  let job = null;
  let result = null;
  let selected = null;
  let view = null;
  const details = new Map();

  // Plotly reads a subset of HTML in its text, hover text, tick labels and legend names:
  // everything drawn there that comes from outside (task ids, device names) passes through
  // this first. Plotly turns the entities back into the characters.
  const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };
  function plain(text) {
    return String(text).replace(/[&<>]/g, (c) => ENTITIES[c]);
  }

  // Mirrors the `sig` filter of templatetags/scheduling_format.py.
  function sig(v) {
    if (typeof v !== "number" || !Number.isFinite(v)) return "—";
    if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3)) {
      return v.toExponential(2).replace(/e([+-])(\d)$/, "e$10$2");
    }
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return String(Number(v.toPrecision(4)));
  }

  function font() {
    return { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#4a5562" };
  }

  // --- the front ----------------------------------------------------------------------
  function views() {
    const n = job.objectives.length;
    if (n <= 2) return [["2d", "Scatter"]];
    if (n === 3) return [["3d", "3D scatter"], ["parallel", "Parallel coordinates"]];
    return [["parallel", "Parallel coordinates"]];
  }

  function setupViews() {
    const group = document.getElementById("front-views");
    const choices = views();
    view = choices[0][0];
    group.replaceChildren();
    if (choices.length < 2) return;
    for (const [key, label] of choices) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button small";
      button.dataset.view = key;
      button.textContent = label;
      button.setAttribute("aria-pressed", String(key === view));
      button.addEventListener("click", () => {
        view = key;
        for (const b of group.children) b.setAttribute("aria-pressed", String(b === button));
        drawFront();
      });
      group.append(button);
    }
  }

  // Where a solution sits on the scatter's axes; one objective is drawn against its name.
  function coords(points, name) {
    const [a, b, c] = job.objectives;
    const value = (p, key) => p.objectives[key];
    const xyz = {
      x: points.map((p) => value(p, a)),
      y: points.map((p) => (b === undefined ? name : value(p, b))),
    };
    if (view === "3d") xyz.z = points.map((p) => value(p, c));
    return xyz;
  }

  function scatterTrace(points, name, marker, extra = {}) {
    return {
      ...coords(points, plain(name)),
      type: view === "3d" ? "scatter3d" : "scatter",
      mode: "markers",
      name: plain(name),
      marker,
      customdata: points.map((p) => p.id),
      text: points.map((p) => plain(p.label)),
      hovertemplate: `%{text}<br>${hoverAxes()}<extra></extra>`,
      ...extra,
    };
  }

  function hoverAxes() {
    const axes = view === "3d" ? ["x", "y", "z"] : ["x", "y"];
    return job.objectives.slice(0, axes.length)
      .map((name, i) => `${plain(job.labels[name])}: %{${axes[i]}:.4g}`).join("<br>");
  }

  function scatterTraces() {
    const is3d = view === "3d";
    const front = result.front.filter((p) => !p.is_knee);
    const knee = result.front.filter((p) => p.is_knee);
    const traces = [
      scatterTrace(front, "Pareto front", { color: FRONT_COLOR, size: is3d ? 4 : 8, opacity: 0.85 }),
    ];
    if (!is3d && job.objectives.length === 2) {
      // The front as a staircase: what it dominates lies above and to the right.
      traces[0] = { ...scatterTrace(result.front, "Pareto front",
        { color: FRONT_COLOR, size: 8, opacity: 0.85 }), mode: "lines+markers",
      line: { shape: "hv", color: FRONT_COLOR, width: 1, dash: "dot" } };
    }
    traces.push(scatterTrace(knee, "Knee", {
      color: KNEE_COLOR, size: is3d ? 8 : 18, symbol: is3d ? "diamond" : "star",
      line: { color: "#7a3e00", width: 1 },
    }));
    result.baselines.forEach((p, i) => {
      const [symbol2d, symbol3d, color] = BASELINE_STYLES[i % BASELINE_STYLES.length];
      traces.push(scatterTrace([p], p.short, {
        color, size: is3d ? 6 : 12, symbol: is3d ? symbol3d : symbol2d,
      }, { mode: "markers+text", textposition: "top center", text: [plain(p.short)],
        hovertext: [plain(p.label)], hovertemplate: `%{hovertext}<br>${hoverAxes()}<extra></extra>`,
        textfont: { color } }));
    });
    const bound = { id: null, label: "Lower bounds", objectives: result.lower_bounds };
    traces.push(scatterTrace([bound], "Lower bounds", {
      color: BOUND_COLOR, size: is3d ? 5 : 12, symbol: is3d ? "x" : "x-thin-open",
      line: { color: BOUND_COLOR, width: 2 },
    }, { visible: "legendonly" }));
    // Last: the ring around the chosen solution, moved by `show`.
    traces.push(scatterTrace(selected ? [selected] : [], "Selected", {
      color: "rgba(0,0,0,0)", size: is3d ? 10 : 22, symbol: "circle-open",
      line: { color: "#141b26", width: 2 },
    }, { showlegend: false, hoverinfo: "skip", hovertemplate: null }));
    return traces;
  }

  function axisTitle(i) {
    const name = job.objectives[i];
    return { title: { text: name === undefined ? "" : plain(job.labels[name]) } };
  }

  function scatterLayout() {
    const base = {
      margin: { l: 64, r: 16, t: 10, b: 48 },
      font: font(),
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      hovermode: "closest",
    };
    if (view === "3d") {
      return { ...base, margin: { l: 0, r: 0, t: 30, b: 0 },
        scene: { xaxis: axisTitle(0), yaxis: axisTitle(1), zaxis: axisTitle(2),
          camera: { eye: { x: 1.35, y: 1.35, z: 0.8 } } } };
    }
    return { ...base, margin: { ...base.margin, t: 40 },
      xaxis: { ...axisTitle(0), gridcolor: "#eef1f5", exponentformat: "e" },
      yaxis: { ...axisTitle(1), gridcolor: "#eef1f5", exponentformat: "e" } };
  }

  // Parallel coordinates: one line per solution; colours tell front, knee and baselines
  // apart, and the first axis names them.
  function parallelTrace() {
    const lines = [
      ...result.front.filter((p) => !p.is_knee).map((p) => [p, 0, null]),
      ...result.front.filter((p) => p.is_knee).map((p) => [p, 1, "knee"]),
      ...result.baselines.map((p, i) => [p, 2 + i, p.short]),
      [{ objectives: result.lower_bounds }, 2 + result.baselines.length, "lower bounds"],
    ];
    const colors = [FRONT_COLOR, KNEE_COLOR,
      ...result.baselines.map((_, i) => BASELINE_STYLES[i % BASELINE_STYLES.length][2]),
      BOUND_COLOR];
    const n = colors.length;
    // Named lines spread evenly over the first axis, so that their labels do not overlap;
    // the front's lines take the places between them.
    const names = lines.filter(([, , label]) => label);
    const step = names.length > 1 ? (lines.length - 1) / (names.length - 1) : 0;
    const taken = names.map((_, j) => Math.round(j * step));
    const free = lines.map((_, i) => i).filter((i) => !taken.includes(i));
    const position = lines.map(([, , label]) => (label ? taken.shift() : free.shift()));
    const named = lines.map(([, , label], i) => [position[i], label]).filter(([, l]) => l);
    return {
      type: "parcoords",
      line: {
        color: lines.map(([, group]) => (group + 0.5) / n),
        colorscale: colors.flatMap((c, i) => [[i / n, c], [(i + 1) / n, c]]),
        cmin: 0,
        cmax: 1,
      },
      dimensions: [
        { label: "Solution", values: position,
          tickvals: named.map(([i]) => i), ticktext: named.map(([, label]) => plain(label)) },
        ...job.objectives.map((name) => ({
          label: plain(job.labels[name]), values: lines.map(([p]) => p.objectives[name] ?? 0),
        })),
      ],
    };
  }

  function drawFront() {
    const chart = document.getElementById("front-chart");
    if (view === "parallel") {
      const layout = { margin: { l: 80, r: 60, t: 50, b: 20 }, font: font(),
        paper_bgcolor: "rgba(0,0,0,0)" };
      Plotly.newPlot(chart, [parallelTrace()], layout, CONFIG);
      return;
    }
    Plotly.newPlot(chart, scatterTraces(), scatterLayout(), CONFIG);
    chart.on("plotly_click", (event) => {
      const id = event.points[0]?.customdata;
      if (id) select(id);
    });
  }

  function ringSelected() {
    const chart = document.getElementById("front-chart");
    if (view === "parallel" || !chart.data) return;
    const ring = coords([selected], "");
    const update = { x: [ring.x], y: [ring.y] };
    if (ring.z) update.z = [ring.z];
    // The y of a one-objective chart is the trace's name: the ring sits on its point.
    if (job.objectives.length === 1) {
      update.y = [[selected.kind === "front" ? "Pareto front" : plain(selected.short)]];
    }
    Plotly.restyle(chart, update, [chart.data.length - 1]);
  }

  // --- the chosen solution ------------------------------------------------------------
  async function select(id) {
    try {
      if (!details.has(id)) {
        details.set(id, await Triad.getJson(job.solution_url.replace(ZERO, id)));
      }
    } catch (error) {
      console.warn("could not load the solution", error);
      return;
    }
    show(details.get(id));
    history.replaceState(null, "", `${document.body.dataset.pageUrl}?solution=${id}`);
  }

  function show(detail) {
    selected = detail;
    document.getElementById("solution-title").textContent = detail.label;
    document.getElementById("solution-note").textContent = detail.feasible
      ? "" : `misses a deadline by ${sig(detail.deadline_violation_s)} s`;
    for (const row of document.querySelectorAll("tr[data-solution-id]")) {
      row.setAttribute("aria-selected", String(row.dataset.solutionId === detail.id));
    }
    const form = document.getElementById("propose-form");
    if (form) {
      form.action = job.propose_url.replace(ZERO, detail.id);
      form.querySelector("[data-solution-label]").textContent = detail.label;
      document.getElementById("propose-button").disabled = !detail.feasible;
    }
    ringSelected();
    drawGantt(detail);
    fillComparison(detail);
  }

  function drawGantt(detail) {
    const devices = job.devices;
    const tierRank = (id) => TIER_ORDER[devices[id]?.tier] ?? 3;
    const name = (id) => devices[id]?.name ?? id;
    const used = [...new Set(detail.timeline.map((t) => t.device))]
      .sort((a, b) => tierRank(a) - tierRank(b) || name(a).localeCompare(name(b)));
    // Rows are labelled by name; two devices of one name get their ids' starts appended.
    const counts = new Map();
    for (const id of used) counts.set(name(id), (counts.get(name(id)) ?? 0) + 1);
    const rowLabel = new Map(used.map((id) => [id,
      counts.get(name(id)) > 1 ? `${name(id)} (${id.slice(0, 8)})` : name(id)]));

    const byKind = new Map();
    for (const t of detail.timeline) {
      const kind = taskKind(t.task);
      if (!byKind.has(kind)) byKind.set(kind, []);
      byKind.get(kind).push(t);
    }
    // Rows are Plotly categories, so the escaped labels are what both the bars and the axis use.
    const row = (id) => plain(rowLabel.get(id));
    const traces = [...byKind.entries()].map(([kind, tasks], i) => ({
      type: "bar",
      orientation: "h",
      name: plain(kind),
      y: tasks.map((t) => row(t.device)),
      base: tasks.map((t) => t.start),
      x: tasks.map((t) => t.finish - t.start),
      text: tasks.map((t) => plain(t.task)),
      customdata: tasks.map((t) => t.finish),
      textposition: "inside",
      insidetextanchor: "middle",
      textangle: 0,
      marker: { color: KIND_COLORS[i % KIND_COLORS.length], line: { color: "#fff", width: 1 } },
      hovertemplate: "<b>%{text}</b><br>%{y}<br>%{base:.4g} – %{customdata:.4g} s<extra></extra>",
    }));
    const longest = Math.max(8, ...[...rowLabel.values()].map((label) => label.length));
    const layout = {
      barmode: "overlay",
      height: 90 + 34 * used.length,
      margin: { l: 16 + 7 * longest, r: 16, t: 30, b: 40 },
      font: font(),
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: { title: { text: "seconds" }, rangemode: "tozero", gridcolor: "#eef1f5" },
      yaxis: { type: "category", categoryorder: "array",
        categoryarray: used.map(row).reverse(), ticksuffix: "  " },
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", traceorder: "normal" },
      hovermode: "closest",
      // A task's name only where it fits its bar; hovering shows every one.
      uniformtext: { mode: "hide", minsize: 10 },
    };
    Plotly.newPlot("gantt", traces, layout, CONFIG);
  }

  // Generators number their tasks ("detect-3", "filterContams-0-2"); the rest is the kind.
  // Runs of digits, each after an optional separator, are taken off the end by a loop, as
  // `task_kind` in scheduling_queries.py does: the regex `(?:[-_.]?\d+)+$` backtracks
  // exponentially on a long run of digits followed by anything else.
  function taskKind(id) {
    const digitAt = (i) => id[i] >= "0" && id[i] <= "9";
    let end = id.length;
    while (end > 0 && digitAt(end - 1)) {
      while (end > 0 && digitAt(end - 1)) end -= 1;
      if (end > 0 && "-_.".includes(id[end - 1])) end -= 1;
    }
    return id.slice(0, end) || id;
  }

  function cell(text, className = "num", tag = "td") {
    const element = document.createElement(tag);
    element.className = className;
    element.textContent = text;
    return element;
  }

  function ratioCell(value, reference) {
    const td = cell(sig(reference));
    let ratio = null;
    if (typeof value === "number" && typeof reference === "number") {
      if (reference !== 0) ratio = value / reference;
      else if (value === 0) ratio = 1;
    }
    const span = document.createElement("span");
    span.className = "ratio";
    if (ratio === null) {
      span.textContent = "—";
    } else {
      span.textContent = `×${ratio.toFixed(2)}`;
      if (ratio < 0.9995) span.classList.add("better");
      if (ratio > 1.0005) span.classList.add("worse");
    }
    td.append(" ", span);
    return td;
  }

  function fillComparison(detail) {
    const table = document.getElementById("comparison");
    const head = document.createElement("tr");
    head.append(cell("Reference", "", "th"),
      ...job.objectives.map((name) => cell(job.labels[name], "num", "th")));
    table.tHead.replaceChildren(head);
    const own = document.createElement("tr");
    own.className = "own";
    own.append(cell(detail.label, ""),
      ...job.objectives.map((name) => cell(sig(detail.objectives[name]))));
    const rows = [own];
    const references = [
      ...result.baselines.filter((b) => b.id !== detail.id).map((b) => [b.label, b.objectives]),
      ["Lower bounds", result.lower_bounds],
    ];
    for (const [label, values] of references) {
      const row = document.createElement("tr");
      row.append(cell(label, ""),
        ...job.objectives.map((name) => ratioCell(detail.objectives[name], values[name])));
      rows.push(row);
    }
    table.tBodies[0].replaceChildren(...rows);
  }

  // Rows of the front and baseline tables choose a solution too (by click or Enter).
  document.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-solution-id]");
    if (row && job) select(row.dataset.solutionId);
  });
  document.addEventListener("keydown", (event) => {
    const row = event.target.closest?.("tr[data-solution-id]");
    if (row && job && event.key === "Enter") select(row.dataset.solutionId);
  });

  function init() {
    const source = document.getElementById("result-data");
    if (!source || !window.Plotly) return;
    job = JSON.parse(document.getElementById("job-data").textContent);
    result = JSON.parse(source.textContent);
    const detail = JSON.parse(document.getElementById("solution-data").textContent);
    setupViews();
    if (detail) {
      details.set(detail.id, detail);
      selected = detail;
    }
    drawFront();
    if (detail) show(detail);
  }

  return { init, sig, selectedId: () => selected?.id ?? null };
})();
