// The case list, the case and task pages: a preview of the after-photo the phone just took, one post
// per form (a second tap while the first is on its way does nothing), and the case page's link back
// to the list leading to the list as the tab last showed it. The pages work without this script.
"use strict";
(function () {
  // the list's filters, sorting and page, kept for this tab: the case page's link back to the list
  // (#back-to-list, plain /cases without this script) leads there, after moves made on the case too
  const LIST_KEY = "gp.cases.list";
  function kept(write) {
    try { return write(window.sessionStorage); } catch (err) { return null; }  // storage turned off
  }
  if (document.body.classList.contains("cases-list")) {
    kept((store) => store.setItem(LIST_KEY, location.search));
  }
  const backToList = document.getElementById("back-to-list");
  const listSearch = backToList && kept((store) => store.getItem(LIST_KEY));
  if (listSearch) backToList.href = "/cases" + listSearch;

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
