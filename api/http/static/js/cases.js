// The case list, the case and task pages: a preview of the after-photo the phone just took, one post
// per form (a second tap while the first is on its way does nothing), and the case page's link back
// to the list leading to the list as the tab last showed it. The pages work without this script.
// In the street: a tap while the phone has no network sends nothing and says so, the note and photo
// staying on the page (the browser's own "no internet" page would take its place); and a typed note is
// kept on the phone (localStorage, a day at most) until the move is made, so that a page the phone
// reloaded (a tab the system closed while the camera was open) gives it back.
"use strict";
(function () {
  const DRAFT = "gp-draft:";  // + case id + ":" + the move's target + ":" + the status it moves from
  const DRAFT_DAY_MS = 24 * 3600 * 1000;
  const store = (() => { try { return window.localStorage; } catch (e) { return null; } })();

  function forget(test) {
    if (!store) return;
    for (const key of Object.keys(store)) {
      if (!key.startsWith(DRAFT)) continue;
      let at = 0;
      try { at = Number(JSON.parse(store.getItem(key)).at) || 0; } catch (e) { at = 0; }
      if (test(key) || Date.now() - at > DRAFT_DAY_MS) store.removeItem(key);
    }
  }
  // a move made (the page says so with done=): its drafts are done with; any draft a day old goes too
  const head = document.getElementById("case");
  const params = new URLSearchParams(window.location.search);
  const doneCase = params.has("done") && head ? head.dataset.caseId : "";
  forget((key) => doneCase !== "" && key.startsWith(`${DRAFT}${doneCase}:`));

  for (const form of document.querySelectorAll("form.move-form")) {
    const note = form.querySelector("textarea[name=note]");
    const caseId = (form.getAttribute("action") || "").split("/")[2];
    const target = form.querySelector("input[name=to]"), from = form.querySelector("input[name=from]");
    if (!store || !note || !caseId || !target) continue;
    const key = `${DRAFT}${caseId}:${target.value}:${from ? from.value : ""}`;
    let kept = null;
    try { kept = JSON.parse(store.getItem(key) || "null"); } catch (e) { kept = null; }
    if (kept && typeof kept.note === "string" && kept.note && !note.value) {
      note.value = kept.note;
      const said = gp.el("p", { class: "muted small draft-restored", text: gp.t("cases.js.draft_restored") });
      note.closest("label").after(said);
    }
    note.addEventListener("input", () => {
      try {
        if (note.value.trim()) store.setItem(key, JSON.stringify({ note: note.value, at: Date.now() }));
        else store.removeItem(key);
      } catch (e) { /* storage full or refused: the page still has the note */ }
    });
  }

  function offlineNotice(form) {
    let notice = form.querySelector(".move-offline");
    if (!notice) {
      notice = gp.el("p", { class: "flash error move-offline", role: "alert" });
      form.querySelector("button[type=submit]").before(notice);
    }
    return notice;
  }

  window.addEventListener("online", () => {
    for (const notice of document.querySelectorAll(".move-offline")) {
      notice.textContent = gp.t("cases.js.online_again");
      notice.className = "flash ok move-offline";
    }
  });

  // the list's filters, sorting and page, kept for this tab: the case page's link back to the list
  // (#back-to-list, plain /cases without this script) leads there, after moves made on the case too
  const LIST_KEY = "gp.cases.list";
  function inTab(write) {
    try { return write(window.sessionStorage); } catch (err) { return null; }  // storage turned off
  }
  if (document.body.classList.contains("cases-list")) {
    inTab((store) => store.setItem(LIST_KEY, location.search));
  }
  const backToList = document.getElementById("back-to-list");
  const listSearch = backToList && inTab((store) => store.getItem(LIST_KEY));
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
      if (navigator.onLine === false) {  // nothing would arrive: keep the page, its note and photo
        event.preventDefault();
        const notice = offlineNotice(form);
        notice.textContent = gp.t("cases.js.offline");
        notice.className = "flash error move-offline";
        return;
      }
      const notice = form.querySelector(".move-offline");
      if (notice) notice.remove();
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
