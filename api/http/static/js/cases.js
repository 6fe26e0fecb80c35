// The case list, the case and task pages: the after-photo's big camera button, with the chosen
// photo's thumbnail and size; one post per form (a second tap while the first is on its way does
// nothing); a photo over the service's limit refused before anything is sent, and one within it sent
// with its progress shown (XHR, the photo as taken: it is evidence, hashed as it arrives, never shrunk
// here); and the case page's link back to the list leading to the list as the tab last showed it.
// The pages work without this script (the browser's own file control, a plain post).
// In the street: a tap while the phone has no network sends nothing and says so, the note and photo
// staying on the page (the browser's own "no internet" page would take its place); and a typed note is
// kept on the phone (localStorage, a day at most) until the move is made, so that a page the phone
// reloaded (a tab the system closed while the camera was open) gives it back.
// A move sent by XHR asks the service to name the page to open next rather than redirect to it (an XHR
// follows a redirect itself, and that page would then be loaded twice); a refused one's answer takes
// the place of the page's #main (gp.replaceMain), never written over the document, so that the page's
// scripts do not run again in this window (their window listeners registered twice).
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

  function keepDrafts(root) {
    for (const form of root.querySelectorAll("form.move-form")) {
      const note = form.querySelector("textarea[name=note]");
      const caseId = (form.getAttribute("action") || "").split("/")[2];
      const target = form.querySelector("input[name=to]"), from = form.querySelector("input[name=from]");
      if (!store || !note || !caseId || !target) continue;
      const key = `${DRAFT}${caseId}:${target.value}:${from ? from.value : ""}`;
      let kept = null;
      try { kept = JSON.parse(store.getItem(key) || "null"); } catch (e) { kept = null; }
      if (kept && typeof kept.note === "string" && kept.note && !note.value) {
        note.value = kept.note;
        const said = gp.el("p", {
          class: "muted small draft-restored", text: gp.t("cases.js.draft_restored") });
        note.closest("label").after(said);
      }
      note.addEventListener("input", () => {
        try {
          if (note.value.trim()) store.setItem(key, JSON.stringify({ note: note.value, at: Date.now() }));
          else store.removeItem(key);
        } catch (e) { /* storage full or refused: the page still has the note */ }
      });
    }
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
  function linkBackToList(root) {
    const backToList = root.querySelector("#back-to-list");
    const listSearch = backToList && inTab((store) => store.getItem(LIST_KEY));
    if (listSearch) backToList.href = "/cases" + listSearch;
  }

  function sizeText(bytes) {
    if (bytes >= 1024 * 1024) return gp.t("cases.js.size_mb", { mb: (bytes / (1024 * 1024)).toFixed(1) });
    return gp.t("cases.js.size_kb", { kb: Math.max(1, Math.round(bytes / 1024)) });
  }

  function limitBytes(form) { return Number(form && form.dataset.maxPhotoBytes) || 0; }

  function tooLarge(form, file) {  // the text that says so, or ""
    const limit = limitBytes(form);
    if (!file || !limit || file.size <= limit) return "";
    const mb = limit / (1024 * 1024);
    return gp.t("cases.js.photo_too_large", { size: sizeText(file.size), limit: Number(mb.toFixed(1)) });
  }

  // the after-photo: the camera behind the big button (the file control's label), the chosen photo's
  // thumbnail and size under it, the button then taking another
  function photoButtons(root) {
    for (const input of root.querySelectorAll("input.after-photo-input")) {
      const pick = input.closest(".photo-pick");
      const chosen = pick && pick.querySelector(".photo-chosen");
      const preview = chosen && chosen.querySelector("img.photo-preview");
      if (!pick || !preview) continue;
      pick.classList.add("photo-js");  // the big button stands for the control, hidden now
      const size = chosen.querySelector(".photo-size");
      const take = pick.querySelector(".photo-take"), label = pick.querySelector(".photo-take-text");
      let shown = null;
      const show = () => {
        if (shown) URL.revokeObjectURL(shown);
        const file = input.files && input.files[0];
        shown = file ? URL.createObjectURL(file) : null;
        if (shown) preview.src = shown; else preview.removeAttribute("src");
        chosen.hidden = !shown;
        if (label) label.textContent = gp.t(file ? "cases.js.retake" : "cases.move.take_photo");
        if (take) take.classList.toggle("primary", !file);  // taken: the form's own button comes next
        if (size && file) {
          const refused = tooLarge(input.form, file);
          size.textContent = refused || gp.t("cases.js.photo_chosen", { size: sizeText(file.size) });
          size.className = refused ? "photo-size error" : "photo-size";
        }
      };
      input.addEventListener("change", show);
      if (input.files && input.files.length) show();  // kept by the browser (back, a restored tab)
    }
  }

  function say(form, cls, text, role) {  // a line above the form's button: cases.js's own notices
    let line = form.querySelector(".move-notice");
    if (!line) {
      line = gp.el("p", { class: "move-notice" });
      form.querySelector("button[type=submit]").before(line);
    }
    line.className = `move-notice ${cls}`;
    line.setAttribute("role", role || "status");
    line.textContent = text;
    return line;
  }

  function ready(form) {  // usable again: nothing is on its way
    form.dataset.sending = "";
    const button = form.querySelector("button[type=submit]");
    if (button && button.dataset.label) { button.textContent = button.dataset.label; button.removeAttribute("aria-busy"); }
    const bar = form.querySelector("progress.upload-progress");
    if (bar) bar.hidden = true;
  }

  function go(where) {  // the page the service named (X-GP-Location): of this site only
    const target = new URL(where, window.location.href);
    window.location.assign(target.origin === window.location.origin ? target.href : "/");
  }

  function showAnswer(form, xhr) {
    // a refused move: the page the plain form would have shown (the form again with the error beside
    // it, or why nothing can be sent) in place of this one's #main, opened at the form
    const type = xhr.getResponseHeader("Content-Type") || "";
    const answer = type.startsWith("text/html")
      ? new DOMParser().parseFromString(xhr.responseText, "text/html") : null;
    if (!answer || !gp.replaceMain(answer)) {  // no page of ours (a proxy's own answer): say so here
      ready(form);
      const text = gp.t("cases.js.upload_refused", { status: xhr.status });
      say(form, "flash error move-refused", text, "alert");
      return;
    }
    const at = document.getElementById("actions");
    if (at) at.scrollIntoView();
  }

  function upload(form, file) {
    // with the photo, the move goes by XHR for its progress (fetch has none for what it sends); the
    // service names the page the plain form would have led to (X-GP-Location), opened once from here,
    // or answers with the page the plain form would have shown (refused)
    let bar = form.querySelector("progress.upload-progress");
    if (!bar) {
      bar = gp.el("progress", { class: "upload-progress", max: "100", value: "0" });
      form.querySelector("button[type=submit]").before(bar);
    }
    bar.hidden = false;
    bar.value = 0;
    const line = say(form, "upload-status muted", gp.t("cases.js.uploading", {
      percent: 0, sent: sizeText(0), total: sizeText(file.size) }));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");  // name the next page, no redirect
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((event.loaded / event.total) * 100);
      bar.value = percent;
      line.textContent = gp.t("cases.js.uploading", {
        percent, sent: sizeText(Math.min(file.size, event.loaded)), total: sizeText(file.size) });
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 100;
      line.textContent = gp.t("cases.js.upload_saving");
    });
    xhr.addEventListener("load", () => {
      const next = xhr.getResponseHeader("X-GP-Location");
      if (next) { go(next); return; }  // the move made (or a login first): that page, loaded once
      const target = new URL(xhr.responseURL || form.action, window.location.href);
      const sent = new URL(form.action, window.location.href);
      if (target.pathname !== sent.pathname || target.search !== sent.search) {
        window.location.assign(target.href);  // redirected all the same (a proxy's login): go there
      } else {
        showAnswer(form, xhr);
      }
    });
    xhr.addEventListener("error", () => {  // the connection dropped: nothing arrived to be saved
      ready(form);
      say(form, "flash error move-offline", gp.t("cases.js.upload_failed"), "alert");
    });
    xhr.send(new FormData(form));
  }

  function sendOnce(root) {
    for (const form of root.querySelectorAll("form.move-form")) {
      form.addEventListener("submit", (event) => {
        if (form.dataset.sending === "1") { event.preventDefault(); return; }
        if (navigator.onLine === false) {  // nothing would arrive: keep the page, its note and photo
          event.preventDefault();
          const notice = offlineNotice(form);
          notice.textContent = gp.t("cases.js.offline");
          notice.className = "flash error move-offline";
          return;
        }
        const photo = form.querySelector("input.after-photo-input");
        const file = photo && photo.files && photo.files[0];
        const refused = tooLarge(form, file);
        if (refused) {  // the service would refuse it after the whole upload: say so now, send nothing
          event.preventDefault();
          say(form, "flash error photo-too-large", refused, "alert");
          return;
        }
        const notice = form.querySelector(".move-offline");
        if (notice) notice.remove();
        const tooBig = form.querySelector(".photo-too-large");
        if (tooBig) tooBig.remove();
        form.dataset.sending = "1";
        const button = form.querySelector("button[type=submit]");
        if (button) {
          button.dataset.label = button.textContent;
          button.textContent = gp.t("cases.js.sending");
          button.setAttribute("aria-busy", "true");
        }
        if (file && typeof FormData === "function" && window.XMLHttpRequest) {
          event.preventDefault();
          upload(form, file);
        }
      });
    }
  }

  // the page's content, and a refused form's answer in its place: set up once each
  function setUp(root) {
    keepDrafts(root);
    linkBackToList(root);
    photoButtons(root);
    sendOnce(root);
  }
  setUp(document);
  gp.onNewContent(setUp);
  // back from the browser's cache (the back button): the forms are usable again
  window.addEventListener("pageshow", () => {
    for (const form of document.querySelectorAll("form.move-form[data-sending='1']")) ready(form);
  });
})();
