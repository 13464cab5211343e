"use strict";
// Jobs list and review queue: on a live event, fetch the page again and swap in the
// server-rendered parts named by <body data-refresh>. A part the user is working in (typing
// a comment, or reading a form's errors) is left alone and tried again a little later.
(() => {
  const { refresh: ids, livePath, pageUrl } = document.body.dataset;
  const RETRY_MS = 2000;
  let timer = null;

  function busy(part) {
    return part.contains(document.activeElement) || part.querySelector(".invalid") !== null ||
      [...part.querySelectorAll("textarea")].some((input) => input.value.trim());
  }

  async function refresh() {
    timer = null;
    let fresh;
    try {
      const response = await fetch(pageUrl, { headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error(`${pageUrl}: ${response.status}`);
      fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (error) {
      console.warn("refresh failed", error);
      return;
    }
    for (const id of ids.split(" ")) {
      const part = document.getElementById(id);
      const next = fresh.getElementById(id);
      if (!part || !next) continue;
      if (busy(part)) schedule(RETRY_MS);
      else part.replaceWith(next);
    }
  }

  function schedule(delay = 250) {
    if (!timer) timer = setTimeout(refresh, delay);
  }

  let opened = false;
  Triad.live(livePath, {
    onMessage: () => schedule(),
    // After a reconnect, catch up on what the socket missed (the first open has the page).
    onOpen() {
      if (opened) schedule();
      opened = true;
    },
  });
})();
