"use strict";
// Rollout page: each device's state and download progress arrive live over
// ws/deployments/<id>/ and are written into its row; a change of the rollout's status,
// phase or counts fetches the page again and swaps in its server-rendered summary (phases,
// counts, the buttons that still apply) and device table.
(() => {
  const { deploymentId, pageUrl } = document.body.dataset;
  const LABELS = JSON.parse(document.getElementById("state-labels").textContent);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  // Mirrors templates/frontend/deployments/_target_detail.html.
  function detail(target) {
    const nodes = [];
    if (target.state === "downloading") {
      const percent = Math.round(100 * Math.min(Math.max(target.progress || 0, 0), 1));
      const bar = element("div", "progress thin");
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-label", `Download of ${target.device_name}`);
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-valuenow", String(percent));
      const fill = element("i");
      fill.style.width = `${percent}%`;
      bar.append(fill);
      nodes.push(bar, element("span", "percent", `${percent} %`));
    } else if (target.reason || target.detail) {
      nodes.push(element("span", "reason", target.reason), " ",
        element("span", "detail", target.detail));
    }
    return nodes;
  }

  // A summary older than what the row shows (a fetched page may be) is left out.
  function apply(target) {
    const row = document.getElementById(`target-${target.id}`);
    if (!row || Triad.isOlder(target.updated_at, row.dataset.updatedAt)) return;
    const changed = row.dataset.state !== target.state;
    row.dataset.state = target.state;
    row.dataset.updatedAt = target.updated_at;
    const pill = row.querySelector("[data-field=state]");
    pill.className = `pill state-${target.state}`;
    pill.textContent = LABELS[target.state] || target.state;
    row.querySelector("[data-field=detail]").replaceChildren(...detail(target));
    Triad.setTime(row.querySelector("[data-field=updated_at]"), target.updated_at);
    if (changed) {
      row.classList.remove("flash");
      void row.offsetWidth; // restart the animation
      row.classList.add("flash");
    }
  }

  // --- resynchronising with the server ------------------------------------------------

  // Device updates that arrive while a fetch is out are applied again after the swap:
  // `apply` keeps the newer of the two.
  let inFlight = null;

  async function syncOnce() {
    inFlight = [];
    const response = await fetch(pageUrl, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${pageUrl}: ${response.status}`);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    Triad.swap(fresh, "rollout-summary");
    Triad.swap(fresh, "devices-card");
    for (const target of inFlight) apply(target);
    inFlight = null;
  }

  // One fetch at a time; events during a fetch ask for one more after it.
  const resync = Triad.serialised(syncOnce, "rollout", () => {
    inFlight = null;
  });

  Triad.live(`/ws/deployments/${deploymentId}/`, {
    onMessage(message) {
      if (message.type === "targets") {
        if (inFlight) inFlight.push(...message.targets);
        for (const target of message.targets) apply(target);
      } else {
        resync();
      }
    },
    // Whatever happened before the socket opened, or while it was down.
    onOpen: resync,
  });
})();
