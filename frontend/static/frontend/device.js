"use strict";
// Device page: plotly charts of the last hour, extended live from ws/devices/<id>/.
(() => {
  const { fmt } = Triad;
  const deviceId = document.body.dataset.deviceId;
  const data = JSON.parse(document.getElementById("telemetry-data").textContent);
  const MAX_POINTS = 3600; // an hour at one sample a second
  const CHARTS = [
    { id: "chart-util", range: [0, 100], series: [
      ["cpu_percent", "CPU %", "#2458d3"], ["memory_percent", "Memory %", "#9b51e0"]] },
    { id: "chart-power", series: [["power_w", "Power W", "#e07b00"]] },
    { id: "chart-energy", series: [["energy_j", "Energy J", "#17803d"]] },
  ];
  let lastTs = data.ts.length ? Date.parse(data.ts[data.ts.length - 1]) : -Infinity;
  let status = document.getElementById("device-status").dataset.status;

  function layout({ range, series }) {
    const legend = series.length > 1;
    return {
      margin: { l: 48, r: 12, t: legend ? 28 : 6, b: 30 },
      font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#4a5562" },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: { type: "date", gridcolor: "#eef1f5" },
      yaxis: range ? { range, gridcolor: "#eef1f5" } : { rangemode: "tozero", gridcolor: "#eef1f5" },
      showlegend: legend,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      hovermode: "x unified",
    };
  }

  // plotly.js is large (seconds to parse on a slow machine), so it is loaded only after the
  // socket is on its way; until it has drawn the charts, new samples go into `data`.
  let drawn = false;
  function drawCharts() {
    if (drawn) return;
    drawn = true;
    // Dates as Date objects: plotly then shows them in the browser's time zone.
    const x = data.ts.map((ts) => new Date(ts));
    for (const chart of CHARTS) {
      const traces = chart.series.map(([key, name, color]) => ({
        x, y: data[key], name, type: "scatter", mode: "lines", line: { color, width: 2 },
      }));
      Plotly.newPlot(chart.id, traces, layout(chart), { displaylogo: false, responsive: true });
    }
  }

  function append(samples) {
    const fresh = samples
      .filter((s) => Date.parse(s.ts) > lastTs)
      .sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
    if (!fresh.length) return;
    lastTs = Date.parse(fresh[fresh.length - 1].ts);
    document.getElementById("charts-empty").hidden = true;
    if (!drawn) {
      for (const key of Object.keys(data)) data[key].push(...fresh.map((s) => s[key]));
      return;
    }
    const x = fresh.map((s) => new Date(s.ts));
    for (const chart of CHARTS) {
      Plotly.extendTraces(
        chart.id,
        { x: chart.series.map(() => x), y: chart.series.map(([key]) => fresh.map((s) => s[key])) },
        chart.series.map((_, i) => i),
        MAX_POINTS,
      );
    }
  }

  let asOf;
  function update(device) {
    // Batched heartbeats can arrive after a newer change (a retirement): keep the newer.
    if (Triad.isOlder(device.as_of, asOf)) return;
    if (device.as_of) asOf = device.as_of;
    const pill = document.getElementById("device-status");
    pill.className = `pill pill-${device.status}`;
    pill.textContent = fmt.status(device.status);
    pill.dataset.status = device.status;
    for (const [key, format] of [["cpu_percent", fmt.pct], ["memory_percent", fmt.pct],
                                 ["power_w", fmt.watts], ["energy_j", fmt.joules]]) {
      document.querySelector(`.stats [data-field="${key}"]`).textContent = format(device[key]);
    }
    Triad.setTime(document.querySelector('.stats [data-field="last_heartbeat_at"]'),
                  device.last_heartbeat_at);
    if (device.status !== status) {
      addHistory(status, device.status);
      status = device.status;
    }
    if (status === "retired") document.getElementById("retire-form")?.remove();
  }

  // The event carries no reason; a reload shows it.
  function addHistory(from, to) {
    const row = document.createElement("tr");
    const pill = (s) => `<span class="pill pill-${s}">${fmt.status(s)}</span>`;
    row.innerHTML = `<td><time data-relative></time></td><td>${pill(from)} → ${pill(to)}</td><td></td>`;
    Triad.setTime(row.querySelector("time"), new Date().toISOString());
    document.getElementById("history").prepend(row);
    document.getElementById("history-empty").hidden = true;
  }

  // Whatever happened while the socket was down (or before it first opened).
  async function resync() {
    try {
      const base = `/api/v1/devices/${deviceId}/`;
      update(Triad.fromApi(await Triad.getJson(base)));
      const query = Number.isFinite(lastTs)
        ? `?${new URLSearchParams({ since: new Date(lastTs).toISOString() })}` : "";
      append(await Triad.getJson(`${base}telemetry/${query}`));
    } catch (error) {
      console.warn("device resync failed", error);
    }
  }

  Triad.live(`/ws/devices/${deviceId}/`, {
    onMessage(message) {
      if (message.type !== "update") return;
      update(message.device);
      append(message.samples);
    },
    onOpen: resync,
  });
  const plotly = document.createElement("script");
  plotly.src = document.body.dataset.plotlySrc;
  plotly.onload = drawCharts;
  document.head.append(plotly);
})();
