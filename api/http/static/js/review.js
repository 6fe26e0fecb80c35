// The review queue, keyboard first. The next case is loaded (and its images fetched) while the
// operator looks at the current one, so a decision shows the next case at once; the decision itself
// is posted in the background. A decision that does not land (the session ended, the server is out of
// reach) brings its card back to the front with the error on it, the case still awaiting review (and,
// when the session ended, a link to log in again that comes back here); one refused with a 409
// (someone else decided the case meanwhile) is said so and the card stays gone. Whatever finds the
// session ended (a decision, an undo, a category change, the next card) offers that same link.
// The page renews its claims on the cases it holds while it is in sight and the operator is there; the
// empty card checks again for cases now and then (both below, at the end).
"use strict";
(function () {
  const current = document.getElementById("current");
  const upcoming = document.getElementById("upcoming");
  const rejectPanel = document.getElementById("reject-panel");
  const categoryPanel = document.getElementById("category-panel");
  const lastLine = document.getElementById("last-decision");
  const root = document.getElementById("review");
  const reasons = root.dataset.reasons.split(",");
  const categories = root.dataset.categories.split(",");
  const passed = new Set();  // cases skipped in this visit
  // cases decided in this visit: never asked for again, even while their decision is still on its way
  // (the prefetch of the next case can reach the server before the decision does)
  const decided = new Set();
  let mode = "decide";        // decide | reject | category
  let loading = null;         // the promise of the upcoming card
  let lastDecided = null;     // {id, number} of the last decision, for undo
  // decisions are numbered as they are made: one whose answer lands after a later one's (a slow line)
  // is not "the last decision" that U takes back
  let made = 0, newestLanded = 0;
  let lastPost = Promise.resolve();  // the last decision's request, still on its way perhaps
  const timing = { lastSwapMs: null, swaps: 0 };
  // actions run one after another, in the order keys were pressed (a category change or an undo
  // still in flight must finish before the next decision swaps the card)
  let chain = Promise.resolve();
  function queue(action) {
    chain = chain.then(action).catch((err) => gp.flash(gp.t("error.request", { detail: err.message }), "error"));
    return chain;
  }

  // The session has ended: a 401, or the login page instead of the card asked for (the pages answer a
  // request for HTML without a session with a redirect to /login, which fetch follows)
  function sessionEnded(response) {
    return response.status === 401 || (response.redirected && new URL(response.url).pathname === "/login");
  }

  // The link that logs in again and comes back to this page, for every error that finds the session ended
  function logInAgain() {
    const back = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    return gp.el("a", { class: "log-in-again", href: back, text: gp.t("review.log_in_again") });
  }

  // A request refused (not ok, or the session ended): true after saying why, in the flash line
  async function refused(response) {
    if (sessionEnded(response)) {
      await response.text().catch(() => "");  // read to the end: one left unread is cut off on leaving
      gp.flash(gp.t("error.request", { detail: gp.t("review.session_ended") }), "error", logInAgain());
      return true;
    }
    if (response.ok) return false;
    gp.flash(gp.t("error.request", { detail: await gp.errorText(response) }), "error");
    return true;
  }

  // The heading's count of cases awaiting review, as the server last said it: after each decision
  // that lands, an undo and a category change (before, it kept the count the page was loaded with)
  function showPending(count) {
    if (count === undefined || count === null || count === "" || !Number.isFinite(Number(count))) return;
    document.getElementById("queue-count").textContent = gp.t("review.pending", { count: Number(count) });
  }

  function card(container) { return container.querySelector("article"); }
  function caseId(container) { const a = card(container); return a && a.dataset.caseId ? Number(a.dataset.caseId) : null; }

  function setMode(next) {
    mode = next;
    rejectPanel.hidden = next !== "reject";
    categoryPanel.hidden = next !== "category";
    // the lists sit below the card, out of sight on a phone and on most laptops: bring the open one in
    const open = next === "reject" ? rejectPanel : next === "category" ? categoryPanel : null;
    if (open) open.scrollIntoView({ block: "nearest" });
  }

  function show(container, html) {
    container.innerHTML = html;
    watchPictures(container);
    window.gpFrames.drawBoxes(container);
    if (container === current) explainEmpty();
  }

  // A picture of a card that cannot be loaded (its evidence file missing from the store, or unreadable)
  // is said so on that card, and left out: before, a broken picture with a clipped caption showed, and
  // the operator could judge the case without its evidence. Also for a card loaded ahead, out of sight
  // (the pictures load there too, and the card keeps the message when it comes to the front)
  function watchPictures(container) {
    for (const img of container.querySelectorAll("article img")) {
      if (img.complete) { if (!img.naturalWidth) pictureMissing(img); }
      else img.addEventListener("error", () => pictureMissing(img), { once: true });
    }
  }

  function pictureMissing(img) {
    img.hidden = true;
    const line = img.closest("article") && img.closest("article").querySelector(".picture-missing");
    if (line) line.hidden = false;
  }

  // The empty card on screen says why no case is handed out while cases await review: those the
  // operator skipped in this visit (the server lists the still pending ones it was asked to leave out;
  // those decided meanwhile are not among them), offered again, and those another operator holds
  function explainEmpty() {
    const a = card(current);
    if (!a || !a.classList.contains("review-empty")) return;
    const waiting = (a.dataset.waiting || "").split(",").filter(Boolean).map(Number);
    const count = waiting.filter((id) => passed.has(id)).length;
    const line = a.querySelector(".empty-skipped");
    line.querySelector("span").textContent = gp.t("review.empty.skipped", { count });
    line.hidden = count === 0;
    a.querySelector(".empty-none").hidden = count > 0 || a.querySelector(".empty-held") !== null;
  }

  // A message about the card on screen, on that card: it leaves with the card
  function note(message, kind) {
    const a = card(current);
    if (!a) return;
    const old = a.querySelector(".card-note");
    if (old) old.remove();
    a.prepend(gp.el("p", { class: "flash card-note " + kind, role: "status", text: message }));
  }

  function loadUpcoming() {
    const skip = [...passed, ...[...decided].slice(-50)];  // the newest last: the server keeps the last 200
    const id = caseId(current);
    if (id) skip.push(id);
    loading = gp.request("/review/next?skip=" + skip.join(","), { headers: { Accept: "text/html" } })
      .then(async (response) => {
        if (!(await refused(response))) show(upcoming, await response.text());
      })
      .catch((err) => { gp.flash(gp.t("error.request", { detail: err.message }), "error"); });
    return loading;
  }

  async function advance() {
    const started = performance.now();
    if (loading) await loading;
    current.replaceChildren(...upcoming.childNodes);
    window.gpFrames.drawBoxes(current);
    explainEmpty();
    timing.lastSwapMs = performance.now() - started;
    timing.swaps += 1;
    document.body.dataset.reviewSwaps = String(timing.swaps);
    const a = card(current);
    if (a && a.dataset.caseId) { loadUpcoming(); return; }
    loading = null;
    recheckEmpty();  // an empty card loaded ahead a while ago: is it still so?
  }

  async function post(url, data, accept) {
    const form = new URLSearchParams(data || {});
    return gp.request(url, {
      method: "POST",
      body: form,
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: accept || "application/json" },
    });
  }

  async function decide(decision, reason) {
    const a = card(current);
    if (!a || !a.dataset.caseId) return;
    const id = Number(a.dataset.caseId), number = a.dataset.caseNumber;
    const order = ++made;
    const nodes = [...current.childNodes];  // the card, kept until its decision has landed
    setMode("decide");
    decided.add(id);
    await advance();
    const failed = (detail, sessionEnded) =>
      queue(() => bringBack(id, nodes, gp.t("review.decision.failed", { number, detail }), sessionEnded));
    lastPost = post(`/review/${id}/decision`, reason ? { decision, reason } : { decision }).then(async (response) => {
      if (response.ok) {
        showPending((await response.json().catch(() => ({}))).pending);
        if (order < newestLanded) return;
        newestLanded = order;
        lastDecided = { id, number };
        const label = decision === "confirm" ? gp.t("review.done.confirmed", { number })
          : gp.t("review.done.rejected", { number, reason: gp.t("reason." + reason) });
        lastLine.textContent = label + " · " + gp.t("review.undo.hint");
        gp.flash("");
      } else if (response.status === 409) {
        // someone else decided the case meanwhile: it has left the queue, its card stays gone
        gp.flash(await decidedElsewhere(response, number, "decision"), "error");
      } else if (sessionEnded(response)) {
        // in the operator's words (before: the server's English "Authorization: log in first")
        await response.text().catch(() => "");
        failed(gp.t("review.session_ended"), true);
      } else {
        failed(await gp.errorText(response), false);
      }
    }).catch(() => failed(gp.t("review.unreachable")));  // the browser's own words are in English
  }

  // A 409 for an action on a case someone else decided meanwhile, in the operator's words: the case's
  // status now (the body's `current`), not the server's English reason
  async function decidedElsewhere(response, number, action) {
    const body = await response.json().catch(() => ({}));
    if (!body || typeof body.current !== "string") {
      return gp.t("error.conflict", { detail: (body && body.detail) || response.statusText });
    }
    const status = gp.t("status." + body.current);
    return gp.t("review.decided_elsewhere", { number, status, action: gp.t("review.action." + action) });
  }

  // A card whose decision did not land goes back to the front, the error on it; the card on screen
  // becomes the next one again (as after an undo). When the session has ended (a 401) the error offers
  // to log in again, coming back to this page.
  async function bringBack(id, nodes, message, sessionEnded) {
    decided.delete(id);
    setMode("decide");  // a list opened for the card on screen is not for this one
    if (loading) await loading;  // a card still loading ahead would land over the one moved there
    const onScreen = caseId(current);
    if (onScreen) upcoming.replaceChildren(...current.childNodes);
    current.replaceChildren(...nodes);
    const a = card(current);
    if (a) {
      const old = a.querySelector(".decision-failed");
      if (old) old.remove();
      const line = gp.el("p", { class: "flash error decision-failed", role: "alert", text: message });
      if (sessionEnded) line.append(" ", logInAgain());
      a.prepend(line);
    }
    window.gpFrames.drawBoxes(current);
    explainEmpty();
    gp.flash(message, "error");
    if (!onScreen) loadUpcoming();
  }

  async function skip() {
    const id = caseId(current);
    if (!id) return;
    passed.add(id);
    setMode("decide");
    await advance();
    post(`/review/${id}/release`).catch(() => {});
  }

  // The empty card's offer: the cases skipped in this visit come back into the queue, the oldest first
  async function unskip() {
    if (caseId(current)) return;
    passed.clear();
    await loadUpcoming();
    await advance();
  }

  async function undo() {
    await lastPost;
    if (!lastDecided) { gp.flash(gp.t("review.undo.nothing")); return; }
    const { id, number } = lastDecided;
    const response = await post(`/review/${id}/undo`, {}, "text/html");
    if (response.status === 409) {
      // moved on by someone since, or the decision is too old: in the operator's words (before, the
      // server's English "case_id: case GP-... has no decision of yours to undo ...")
      await response.text().catch(() => "");
      lastDecided = null;
      gp.flash(gp.t("review.undo.refused", { number }), "error");
      return;
    }
    if (await refused(response)) return;
    lastDecided = null;
    decided.delete(id);
    const html = await response.text();
    // the case on screen goes back to being the next one; with none on screen (the queue was done)
    // the next one is asked for once the undone case is shown, so that it is not that case again.
    // A card still loading ahead lands first (it would land over the one moved back there)
    if (loading) await loading;
    const onScreen = caseId(current);
    if (onScreen) upcoming.replaceChildren(...current.childNodes);
    show(current, html);
    showPending(card(current) && card(current).dataset.pending);
    if (!onScreen) loadUpcoming();
    lastLine.textContent = gp.t("review.undo.done", { number });
    gp.flash("");
  }

  async function recategorize(category) {
    const id = caseId(current);
    setMode("decide");
    if (!id) return;
    const number = card(current).dataset.caseNumber;
    const response = await post(`/review/${id}/category`, { category }, "text/html");
    if (response.status === 409) {
      // someone else decided the case meanwhile: it has left the queue, and so does its card (before,
      // it stayed on screen for a decision that could only be refused too)
      const message = await decidedElsewhere(response, number, "category");
      if (caseId(current) === id) { decided.add(id); await advance(); }
      gp.flash(message, "error");
      return;
    }
    if (await refused(response)) return;
    show(current, await response.text());
    showPending(card(current) && card(current).dataset.pending);
    note(gp.t("review.category.changed", { category: gp.t("category." + category) }), "ok");
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.repeat) return;  // a key held down is one press: its repeats would decide the cases after
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    const key = event.key;
    // Enter on a focused link or button is that link's or button's (the case number opens the case)
    if (key === "Enter" && target && target.closest && target.closest("a, button")) return;
    if (key === "Escape") { setMode("decide"); event.preventDefault(); return; }
    if (mode === "reject" || mode === "category") {
      const n = Number(key);
      const list = mode === "reject" ? reasons : categories;
      if (Number.isInteger(n) && n >= 1 && n <= list.length) {
        event.preventDefault();
        const choice = list[n - 1];
        setMode("decide");
        queue(() => (list === reasons ? decide("reject", choice) : recategorize(choice)));
      }
      return;
    }
    const lower = key.toLowerCase();
    if (lower === "y" || key === "Enter") { event.preventDefault(); queue(() => decide("confirm")); }
    else if (lower === "r") { event.preventDefault(); setMode("reject"); }
    else if (lower === "c") { event.preventDefault(); setMode("category"); }
    else if (lower === "s" || key === "ArrowRight") { event.preventDefault(); queue(skip); }
    else if (lower === "u" || lower === "z") { event.preventDefault(); queue(undo); }
  });

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action === "confirm") queue(() => decide("confirm"));
    else if (action === "reject") setMode("reject");
    else if (action === "category") setMode("category");
    else if (action === "skip") queue(skip);
    else if (action === "unskip") queue(unskip);
  });
  for (const panel of [rejectPanel, categoryPanel]) {
    panel.addEventListener("click", (event) => {
      const item = event.target.closest("li");
      if (!item) return;
      const index = [...item.parentNode.children].indexOf(item);
      setMode("decide");
      if (panel === rejectPanel) queue(() => decide("reject", reasons[index]));
      else queue(() => recategorize(categories[index]));
    });
  }

  // Claims: the server holds the case on screen and the one loaded ahead for this operator for a lease
  // (data-lease-s, settings.review_lease_s); the page renews them every third of it while it is in
  // sight, and for one lease more once hidden (another tab, for a moment). A tab left hidden longer
  // stops renewing and its claims lapse a lease later, so an abandoned tab does not hold cases; back
  // in sight, it renews at once. A tab in sight with no input from the operator (a key, the pointer, a
  // touch) for data-idle-s (settings.review_idle_s) pauses at that very limit (a timer each input puts
  // off; not at the next renewal beat, up to a third of a lease later): it says so, releases the cases
  // it holds then (another operator gets them without waiting for a lease) and stops asking for cases,
  // so a desk left unattended does not hold them; the next input claims again those nobody took (and is
  // only that: the key pressed does not decide the card). A claim lost meanwhile (it lapsed or was
  // released and another operator took the case, or the case left the queue) is not taken back: the
  // page says so and moves on.
  const leaseMs = (Number(root.dataset.leaseS) > 0 ? Number(root.dataset.leaseS) : 120) * 1000;
  const idleMs = (Number(root.dataset.idleS) > 0 ? Number(root.dataset.idleS) : 600) * 1000;
  const pausedNotice = document.getElementById("review-paused");
  let hiddenSince = document.visibilityState === "hidden" ? Date.now() : null;
  let renewing = false;
  let lastInput = Date.now();
  let paused = false;
  let retake = false;  // the next renewal claims again the cases the pause released
  let swallowClick = false;  // the click of the press that ended a pause is that press's, not the page's
  let idleTimer = 0;

  // (also checked at each renewal beat and empty-card check: a hidden tab's timers may run late)
  function pauseIfIdle() {
    if (paused || Date.now() - lastInput <= idleMs) return paused;
    paused = true;
    setMode("decide");
    pausedNotice.hidden = false;
    for (const id of [caseId(current), caseId(upcoming)].filter(Boolean)) {
      post(`/review/${id}/release`).catch(() => {});  // not released: it lapses a lease later
    }
    return true;
  }

  // Pauses once idleMs have passed since the last input. Input only moves lastInput on (a pointer
  // moving sends many events): a timer that fires early sets itself again for the time left.
  function watchIdle() {
    clearTimeout(idleTimer);
    if (pauseIfIdle()) return;
    idleTimer = setTimeout(watchIdle, lastInput + idleMs - Date.now() + 1);
  }

  function operatorInput(event) {
    lastInput = Date.now();
    if (event.type === "pointerdown" || event.type === "touchstart") swallowClick = false;
    if (!paused) return;
    paused = false;
    pausedNotice.hidden = true;
    retake = true;
    watchIdle();
    if (event.type === "keydown") { event.preventDefault(); event.stopImmediatePropagation(); }
    else if (event.type === "pointerdown" || event.type === "touchstart") swallowClick = true;
    renewClaims();
    recheckEmpty();
  }
  for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"]) {
    document.addEventListener(type, operatorInput, { capture: true, passive: type !== "keydown" });
  }
  document.addEventListener("click", (event) => {
    if (!swallowClick) return;
    swallowClick = false;
    event.preventDefault();
    event.stopImmediatePropagation();
  }, { capture: true });

  async function renewClaims() {
    if (renewing || pauseIfIdle() || (hiddenSince !== null && Date.now() - hiddenSince > leaseMs)) return;
    const ids = [caseId(current), caseId(upcoming)].filter(Boolean);
    if (!ids.length) return;
    renewing = true;
    const retaking = retake;
    const form = { cases: ids.join(",") };
    if (retaking) form.retake = "true";
    try {
      const response = await gp.request("/review/claims", {
        method: "POST",
        body: new URLSearchParams(form),
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        signal: AbortSignal.timeout(leaseMs),  // a request that hangs must not stop the beats for good
      });
      // the session ended or the server failed: the operator's next action says so; tried again next beat
      if (!response.ok || sessionEnded(response)) { await response.text().catch(() => ""); return; }
      if (retaking) retake = false;
      const lost = (await response.json()).lost || [];
      // a renewal that crossed the pause's release: the input that ends the pause claims them again
      if (paused || retake) return;
      if (lost.length) queue(() => claimsLost(new Set(lost)));
    } catch (err) {
      // out of reach: tried again at the next beat
    } finally {
      renewing = false;
    }
  }

  async function claimsLost(lost) {
    if (loading) await loading;
    const onScreen = caseId(current);
    const ahead = caseId(upcoming);
    if (ahead && lost.has(ahead)) {
      upcoming.replaceChildren();  // never seen by the operator: another is loaded in its place
      loadUpcoming();
    }
    if (!onScreen || !lost.has(onScreen)) return;
    const number = card(current).dataset.caseNumber;
    setMode("decide");
    await advance();
    gp.flash(gp.t("review.claim.lost", { number }), "error");
  }

  // The empty card asks again for a case (one released, or newly filed, since it appeared): every
  // EMPTY_RECHECK_MS while the page is in sight, and at once when it comes back into sight or gets the
  // focus. The same request as the next card's; a case it hands out is now held, and shown.
  const EMPTY_RECHECK_MS = 15000;
  let rechecking = false;
  let emptyShown = { html: null, node: null };  // the empty card the last check showed

  function recheckEmpty() {
    if (rechecking || pauseIfIdle() || caseId(current) || document.visibilityState === "hidden") return;
    rechecking = true;
    queue(async () => {
      if (caseId(current)) return;  // an undo or "show the skipped again" brought a case meanwhile
      const skip = [...passed, ...[...decided].slice(-50)];
      const response = await gp.request("/review/next?skip=" + skip.join(","), { headers: { Accept: "text/html" } });
      if (await refused(response)) return;
      const html = await response.text();
      // nothing new: the card on screen (and a button's focus) stays as it is
      if (html === emptyShown.html && card(current) === emptyShown.node) return;
      show(current, html);
      showPending(card(current) && card(current).dataset.pending);
      emptyShown = { html, node: card(current) };
      if (caseId(current)) loadUpcoming();
    }).finally(() => { rechecking = false; });
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      if (hiddenSince === null) hiddenSince = Date.now();
      return;
    }
    hiddenSince = null;
    renewClaims();
    recheckEmpty();
  });
  window.addEventListener("focus", recheckEmpty);
  setInterval(renewClaims, leaseMs / 3);
  watchIdle();
  setInterval(recheckEmpty, EMPTY_RECHECK_MS);

  window.gpReview = timing;
  watchPictures(current);
  window.gpFrames.drawBoxes(current);
  explainEmpty();
  if (caseId(current)) loadUpcoming();
})();
