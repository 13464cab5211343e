"use strict";
// Fleet page: keeps the server-rendered tables current from ws/fleet/.
(() => {
  const { fmt } = Triad;
  const tiers = document.querySelector(".tiers");
  const rowTemplate = document.getElementById("device-row");
  const filterBox = document.getElementById("filter");
  const hideRetired = document.getElementById("hide-retired");
  const ZERO_ID = "00000000-0000-0000-0000-000000000000";

  const rows = () => tiers.querySelectorAll("tr[data-device-id]");
  // Rows by device id: a batch can name thousands of devices, so no per-device DOM search.
  const byId = new Map([...rows()].map((row) => [row.dataset.deviceId, row]));

  function placeRow(row, device) {
    const tbody = document.querySelector(`#tier-${device.tier} tbody`);
    const name = device.name.toLowerCase();
    const next = [...tbody.rows].find((r) => r !== row && r.dataset.name > name);
    if (row.parentNode !== tbody || row.nextElementSibling !== next) {
      tbody.insertBefore(row, next || null);
    }
  }

  function apply(device) {
    let row = byId.get(device.id);
    const isNew = !row;
    if (isNew) {
      row = rowTemplate.content.firstElementChild.cloneNode(true);
      row.dataset.deviceId = device.id;
      byId.set(device.id, row);
    }
    // Batched heartbeats can arrive after a newer change (a retirement): keep the newer.
    if (Triad.isOlder(device.as_of, row.dataset.asOf)) return row;
    if (device.as_of) row.dataset.asOf = device.as_of;
    row.dataset.status = device.status;
    row.dataset.name = device.name.toLowerCase();
    row.className = `status-${device.status}`;
    const link = row.querySelector(".device-name");
    link.textContent = device.name;
    link.href = tiers.dataset.deviceUrl.replace(ZERO_ID, device.id);
    const pill = row.querySelector('[data-field="status"]');
    pill.className = `pill pill-${device.status}`;
    pill.textContent = fmt.status(device.status);
    for (const key of ["cpu_percent", "memory_percent"]) {
      const cell = row.querySelector(`[data-field="${key}"]`);
      cell.textContent = fmt.pct(device[key]);
      cell.nextElementSibling.firstElementChild.style.width = fmt.meter(device[key]);
    }
    row.querySelector('[data-field="power_w"]').textContent = fmt.watts(device.power_w);
    Triad.setTime(row.querySelector('[data-field="last_heartbeat_at"]'), device.last_heartbeat_at);
    if (isNew) placeRow(row, device); // names and tiers are fixed once enrolled
    filter(row);
    return row;
  }

  function flash(row) {
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }

  function refreshCounts() {
    const counts = {};
    for (const row of rows()) counts[row.dataset.status] = (counts[row.dataset.status] || 0) + 1;
    for (const el of document.querySelectorAll("#counts [data-status]")) {
      el.querySelector("b").textContent = counts[el.dataset.status] || 0;
    }
    for (const section of tiers.querySelectorAll("section[data-tier]")) {
      const n = section.querySelectorAll("tr[data-device-id]").length;
      section.querySelector(".tier-count").textContent = n;
      section.querySelector(".empty").hidden = n > 0;
    }
  }

  function filter(row) {
    const query = filterBox.value.trim().toLowerCase();
    row.classList.toggle("filtered-out", query !== "" && !row.dataset.name.includes(query));
  }

  // Events sent while the socket was down are lost, so every (re)connect re-reads the fleet.
  async function resync() {
    const started = performance.now();
    let url = "/api/v1/devices/?limit=1000";
    try {
      while (url) {
        const page = await Triad.getJson(url);
        for (const device of page.results) {
          // A live event that arrived while the page was loading is newer: keep it.
          const row = byId.get(device.id);
          if (!row || !(Number(row.dataset.seen) > started)) apply(Triad.fromApi(device));
        }
        url = page.next;
      }
    } catch (error) {
      console.warn("fleet resync failed", error);
    }
    refreshCounts();
  }

  filterBox.addEventListener("input", () => rows().forEach(filter));
  hideRetired.addEventListener("change", () => {
    document.body.classList.toggle("hide-retired", hideRetired.checked);
  });
  Triad.live("/ws/fleet/", {
    onMessage(message) {
      if (message.type !== "devices") return;
      for (const device of message.devices) {
        const row = apply(device);
        row.dataset.seen = performance.now();
        flash(row);
      }
      refreshCounts();
    },
    onOpen: resync,
  });
})();
