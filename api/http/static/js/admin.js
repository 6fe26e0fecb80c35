// Admin pages: copy a key or secret shown once. Everything else is a plain form.
"use strict";
(function () {
  // The page showing a secret is the answer to a POST: its history entry becomes the GET of the page
  // saying what was done (data-then, no secret in it), so a reload shows that page instead of sending
  // the form again (a device added twice is a 409) and the secret is never shown a second time.
  const card = document.getElementById("secret-card");
  if (card && card.dataset.then && window.history.replaceState) {
    window.history.replaceState(null, "", card.dataset.then);
  }
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
