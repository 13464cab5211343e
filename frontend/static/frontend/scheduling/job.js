"use strict";
// Job page: convergence charts extended live from ws/scheduling/jobs/<id>/. Any other event
// (status, decision) fetches the page again and swaps in its server-rendered parts; when the
// job has just succeeded that brings the result, which front.js draws.
(() => {
  const { jobId, pageUrl, plotlySrc } = document.body.dataset;
  const COLORS = ["#2458d3", "#e07b00", "#17803d", "#9b51e0", "#b42318"];
  let data = readData(document);
  let history = [];
  let drawn = false;

  function readData(root) {
    return JSON.parse(root.getElementById("job-data").textContent);
  }

  const lastGeneration = () => (history.length ? history[history.length - 1].generation : 0);

  // Hypervolume, then each objective's best value: one small chart each.
  function series() {
    return [
      { key: "hypervolume", title: "Hypervolume (higher is better)", value: (e) => e.hypervolume },
      ...data.objectives.map((name) => ({
        key: name, title: `Best ${data.labels[name].toLowerCase()}`, value: (e) => e.best?.[name],
      })),
    ];
  }

  function layout() {
    return {
      margin: { l: 56, r: 12, t: 6, b: 34 },
      font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#4a5562" },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: { title: { text: "generation" }, gridcolor: "#eef1f5", rangemode: "tozero" },
      yaxis: { gridcolor: "#eef1f5", exponentformat: "e" },
      showlegend: false,
      hovermode: "x",
    };
  }

  function drawCharts() {
    drawn = true;
    const container = document.getElementById("convergence-charts");
    // Every figure in the grid first, so that each chart is drawn at its column's width.
    const charts = series().map((s) => {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      const chart = document.createElement("div");
      caption.textContent = s.title;
      chart.className = "chart chart-small";
      chart.id = `chart-${s.key}`;
      figure.append(caption, chart);
      return figure;
    });
    container.replaceChildren(...charts);
    const x = history.map((e) => e.generation);
    series().forEach((s, i) => {
      const trace = {
        x, y: history.map(s.value), type: "scatter", mode: "lines+markers",
        line: { color: COLORS[i % COLORS.length], width: 2 }, marker: { size: 4 },
      };
      Plotly.newPlot(`chart-${s.key}`, [trace], layout(), { displaylogo: false, responsive: true });
    });
  }

  function addEntries(entries) {
    const fresh = entries.filter((e) => e.generation > lastGeneration());
    if (!fresh.length) return;
    history.push(...fresh);
    const latest = fresh[fresh.length - 1];
    document.getElementById("convergence-empty").hidden = true;
    document.getElementById("stat-generation").textContent =
      `${latest.generation} / ${data.generations}`;
    if (!drawn) return;
    const x = fresh.map((e) => e.generation);
    for (const s of series()) {
      Plotly.extendTraces(`chart-${s.key}`, { x: [x], y: [fresh.map(s.value)] }, [0]);
    }
  }

  // A new attempt (a retry, or a worker taking over) starts again from generation 1.
  function restart() {
    history = [];
    if (drawn) drawCharts();
  }


  async function syncOnce() {
    const url = new URL(pageUrl, location.href);
    const selected = TriadFront.selectedId();
    if (selected) url.searchParams.set("solution", selected);
    const response = await fetch(url, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    Triad.swap(fresh, "job-summary");
    Triad.swap(fresh, "decisions");
    // The result is swapped in once: after that the user may be choosing a solution.
    const result = fresh.getElementById("result");
    if (result.hasAttribute("data-ready") &&
        !document.getElementById("result").hasAttribute("data-ready")) {
      Triad.swap(fresh, "result");
      TriadFront.init();
    }
    const next = readData(fresh);
    if (next.attempts !== data.attempts) restart();
    data = next;
    addEntries(data.history);
  }

  // One fetch at a time; events during a fetch ask for one more after it.
  const resync = Triad.serialised(syncOnce, "job");

  Triad.live(`/ws/scheduling/jobs/${jobId}/`, {
    onMessage(message) {
      if (message.type === "progress") {
        // Generation 1 again: a new attempt, which the page tells apart from a late event.
        if (message.entries[0]?.generation === 1 && lastGeneration() > 0) resync();
        else addEntries(message.entries);
      } else {
        resync();
      }
    },
    // Whatever happened before the socket opened, or while it was down.
    onOpen: resync,
  });

  addEntries(data.history);
  // plotly.js is large: loaded once the socket is on its way.
  const plotly = document.createElement("script");
  plotly.src = plotlySrc;
  plotly.onload = () => {
    drawCharts();
    TriadFront.init();
  };
  document.head.append(plotly);
})();
