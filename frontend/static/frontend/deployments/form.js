"use strict";
// Deployment form: show only the field(s) the chosen kind of targets reads. Without this
// script every field shows, and the server reads only the chosen kind's.
(() => {
  const form = document.getElementById("deployment-form");
  const argumentFields = [...form.querySelectorAll("[data-kind]")].map((input) => ({
    kind: input.dataset.kind,
    field: input.closest(".field"),
  }));

  function show() {
    const chosen = form.querySelector("input[name=target_kind]:checked")?.value;
    for (const { kind, field } of argumentFields) field.hidden = kind !== chosen;
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "target_kind") show();
  });
  show();
})();
