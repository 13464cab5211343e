"use strict";
// Shared by every console page: number formats (mirroring templatetags/triad.py),
// relative times, live sockets that reconnect, confirm prompts and copy buttons.
const Triad = (() => {
  const DASH = "—";
  const fmt = {
    pct: (v) => (v == null ? DASH : `${v.toFixed(1)} %`),
    watts: (v) => (v == null ? DASH : `${v.toFixed(1)} W`),
    joules(v) {
      if (v == null) return DASH;
      for (const [factor, unit] of [[1e9, "GJ"], [1e6, "MJ"], [1e3, "kJ"]]) {
        if (Math.abs(v) >= factor) return `${(v / factor).toFixed(1)} ${unit}`;
      }
      return `${v.toFixed(0)} J`;
    },
    meter: (v) => `${Math.min(Math.max(v || 0, 0), 100).toFixed(1)}%`,
    status: (s) => s.charAt(0).toUpperCase() + s.slice(1),
  };

  function relative(iso) {
    if (!iso) return "never";
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function setTime(el, iso) {
    el.setAttribute("datetime", iso || "");
    el.title = iso ? new Date(iso).toLocaleString() : "";
    el.textContent = relative(iso);
  }

  function refreshTimes() {
    for (const el of document.querySelectorAll("time[data-relative]")) {
      el.textContent = relative(el.getAttribute("datetime"));
    }
  }

  // The operator API spells the latest sample's fields with a `last_` prefix.
  function fromApi(d) {
    return {
      id: d.id, name: d.name, tier: d.tier, status: d.status,
      cpu_percent: d.last_cpu_percent, memory_percent: d.last_memory_percent,
      power_w: d.last_power_w, energy_j: d.last_energy_j, last_heartbeat_at: d.last_heartbeat_at,
    };
  }

  // True when summary time `a` is known to be older than `b` (ISO 8601 strings).
  function isOlder(a, b) {
    return Boolean(a && b) && Date.parse(a) < Date.parse(b);
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  // Opens a WebSocket and keeps it open: after a drop it retries with exponential backoff
  // (1 s doubling to 30 s, jittered so a restarted server is not hit by every browser at
  // once). `onOpen` runs on every (re)connect, so pages can fetch what they missed.
  function live(path, { onMessage, onOpen }) {
    const indicator = document.getElementById("live");
    const show = (state, text) => {
      if (!indicator) return;
      indicator.dataset.state = state;
      indicator.textContent = text;
    };
    let delay = 1000;
    function connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}${path}`);
      show("connecting", "connecting…");
      socket.onopen = () => {
        delay = 1000;
        show("live", "live");
        if (onOpen) onOpen();
      };
      socket.onmessage = (event) => onMessage(JSON.parse(event.data));
      socket.onclose = () => {
        const wait = delay * (0.5 + Math.random() / 2);
        delay = Math.min(delay * 2, 30000);
        show("reconnecting", `reconnecting in ${Math.ceil(wait / 1000)} s…`);
        setTimeout(connect, wait);
      };
    }
    connect();
  }

  document.addEventListener("submit", (event) => {
    const question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.textContent);
    } catch {
      // The Clipboard API needs HTTPS or localhost; select the text as a fallback.
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });

  refreshTimes();
  setInterval(refreshTimes, 1000);
  // Replaces the element `id` with its namesake in `fresh` (a fetched page), if both exist.
  function swap(fresh, id) {
    const next = fresh.getElementById(id);
    const current = document.getElementById(id);
    if (next && current) current.replaceWith(next);
  }

  // `sync` (async) one run at a time: a call while it runs asks for one more run after it,
  // so a burst of live events costs at most two fetches. `onError` runs when a run fails.
  function serialised(sync, what, onError) {
    let syncing = false;
    let again = false;
    return async function run() {
      if (syncing) {
        again = true;
        return;
      }
      syncing = true;
      try {
        do {
          again = false;
          await sync();
        } while (again);
      } catch (error) {
        if (onError) onError(error);
        console.warn(`${what} resync failed`, error);
      } finally {
        syncing = false;
      }
    };
  }

  return { fmt, relative, setTime, fromApi, isOlder, getJson, live, swap, serialised };
})();
