// The case and task pages: a preview of the after-photo the phone just took, and one post per form
// (a second tap while the first is on its way does nothing). The forms work without this script.
"use strict";
(function () {
  for (const input of document.querySelectorAll("input.after-photo-input")) {
    const preview = input.form && input.form.querySelector("img.photo-preview");
    if (!preview) continue;
    let shown = null;
    input.addEventListener("change", () => {
      if (shown) URL.revokeObjectURL(shown);
      const file = input.files && input.files[0];
      shown = file ? URL.createObjectURL(file) : null;
      if (shown) preview.src = shown; else preview.removeAttribute("src");
      preview.hidden = !shown;
    });
  }

  for (const form of document.querySelectorAll("form.move-form")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sending === "1") { event.preventDefault(); return; }
      form.dataset.sending = "1";
      const button = form.querySelector("button[type=submit]");
      if (button) {
        button.dataset.label = button.textContent;
        button.textContent = gp.t("cases.js.sending");
        button.setAttribute("aria-busy", "true");
      }
    });
  }
  // back from the browser's cache (the back button): the forms are usable again
  window.addEventListener("pageshow", () => {
    for (const form of document.querySelectorAll("form.move-form[data-sending='1']")) {
      form.dataset.sending = "";
      const button = form.querySelector("button[type=submit]");
      if (button && button.dataset.label) { button.textContent = button.dataset.label; button.removeAttribute("aria-busy"); }
    }
  });
})();
