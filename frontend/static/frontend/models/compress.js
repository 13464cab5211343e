"use strict";
// Model page: the compression form shows only the parameters its recipe's steps read, and
// the preset buttons fill the recipe in.
(() => {
  const form = document.getElementById("compress-form");
  if (!form) return;
  const recipe = form.querySelector("#id_recipe");

  // "prune-distill:0.5+int8-static" -> ["prune-distill", "int8-static"]
  function steps() {
    return recipe.value.split("+").map((part) => part.trim().split(":")[0]).filter(Boolean);
  }

  function show() {
    const kinds = steps();
    let shown = 0;
    for (const input of form.querySelectorAll("[data-steps]")) {
      const field = input.closest(".field");
      // A field the server refused stays in sight, whatever the recipe says now.
      const used = field.classList.contains("invalid") ||
        input.dataset.steps.split(" ").some((step) => kinds.includes(step));
      field.hidden = !used;
      input.disabled = !used; // not sent: a step that does not read it would refuse it
      if (used) shown += 1;
    }
    document.getElementById("no-parameters").hidden = shown > 0;
  }

  form.addEventListener("click", (event) => {
    const button = event.target.closest("[data-recipe]");
    if (!button) return;
    recipe.value = button.dataset.recipe;
    show();
    recipe.focus();
  });
  recipe.addEventListener("input", show);
  show();
})();
