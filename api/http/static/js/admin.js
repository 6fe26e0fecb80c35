// Admin pages: copy a key or secret shown once. Everything else is a plain form.
"use strict";
(function () {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) continue;
    field.addEventListener("focus", () => field.select());
    button.addEventListener("click", async () => {
      field.focus();
      field.select();
      let copied = false;
      try {
        if (navigator.clipboard && window.isSecureContext) {
          await navigator.clipboard.writeText(field.value);
          copied = true;
        } else {
          copied = document.execCommand("copy");
        }
      } catch (e) {
        copied = false;
      }
      window.gp.flash(window.gp.t(copied ? "admin.js.copied" : "admin.js.copy_failed"), copied ? "ok" : "error");
    });
  }
})();
