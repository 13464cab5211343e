"use strict";
// Workloads page: the template form shows only the chosen template's parameters and notes.
(() => {
  const select = document.getElementById("id_template");
  if (!select) return;
  function show() {
    for (const input of document.querySelectorAll("#template-form [data-templates]")) {
      const used = input.dataset.templates.split(" ").includes(select.value);
      input.closest(".field").hidden = !used;
      input.disabled = !used; // not sent: the template would refuse it
    }
    for (const note of document.querySelectorAll(".template-notes [data-template]")) {
      note.hidden = note.dataset.template !== select.value;
      note.previousElementSibling.hidden = note.hidden;
    }
  }
  select.addEventListener("change", show);
  show();
})();
