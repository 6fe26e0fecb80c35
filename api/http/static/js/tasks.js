// My tasks, nearest first: when the browser gives the phone's position, the list is asked for again
// with near=LAT,LON, where the server orders all the team's cases by distance from there before paging
// (the cases sent back still first, those without a position last), and that first page takes the place
// of the one shown, each case with how far it is. Without a position the server's order (oldest dispatch
// first) stays.
// A task tapped while the phone cannot reach the service shows, under it, that there is no network and
// the way there, instead of the browser's error page taking the list's place.
"use strict";
(function () {
  // a move made from a task page (done=ID): the note cases.js kept on the phone for that case is done with
  const done = new URLSearchParams(window.location.search).get("done");
  try {
    for (const key of Object.keys(window.localStorage)) {
      if (done && key.startsWith(`gp-draft:${done}:`)) window.localStorage.removeItem(key);
    }
  } catch (e) { /* no storage: nothing was kept */ }

  const shown = document.getElementById("task-list");
  if (!shown) return;

  // a task tapped while the phone cannot reach the service (no network in the street): the list stays,
  // instead of the browser's error page, and the panel under the task (#task-offline) says so, with what
  // the list holds of it and the way there (the task page's map links, kept on each task). The service
  // is asked first, a few seconds at most: navigator.onLine says only that the phone has some network.
  // With network the tap opens the task page as before.
  const CHECK_MS = 5000;
  let checking = false;

  async function reachable() {
    if (!navigator.onLine) return false;
    const abort = new AbortController();
    const timer = window.setTimeout(() => abort.abort(), CHECK_MS);
    try {
      const response = await fetch("/api/health",
        { cache: "no-store", credentials: "same-origin", signal: abort.signal });
      // the answer read to its end: a body still arriving when the task page is opened is cut off (a
      // failed request in the browser's log), and a service that cannot finish it is not reachable either
      await response.arrayBuffer();
      return response.ok;  // a proxy's 502 for a service down is no way to the task page either
    } catch (e) {
      return false;
    } finally {
      window.clearTimeout(timer);
    }
  }

  function showOffline(panel, item, href) {
    const field = (name) => panel.querySelector(".offline-" + name);
    const lat = Number(item.dataset.lat), lon = Number(item.dataset.lon);
    const where = item.dataset.lat === undefined ? "" : `${lat.toFixed(6)}, ${lon.toFixed(6)}`;
    field("number").textContent = item.dataset.number || "";
    field("category").textContent = item.querySelector(".task-title strong").textContent;
    const cell = item.querySelector(".task-place").textContent;
    field("place").textContent = [cell, where].filter(Boolean).join(" · ");
    for (const app of ["amap", "baidu", "geo"]) {
      if (item.dataset[app]) field(app).href = item.dataset[app]; else field(app).removeAttribute("href");
    }
    field("go").hidden = !item.dataset.geo;
    field("no-position").hidden = Boolean(item.dataset.geo);
    field("still").hidden = true;
    panel.dataset.href = href;
    item.append(panel);
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  }

  async function openTask(href, item, retry) {
    if (checking) return;  // a second tap while the first is asked
    const panel = document.getElementById("task-offline");
    checking = true;
    item.setAttribute("aria-busy", "true");
    if (retry) { retry.disabled = true; panel.querySelector(".offline-still").hidden = true; }
    const ok = await reachable();
    checking = false;
    item.removeAttribute("aria-busy");
    if (retry) retry.disabled = false;
    if (ok || !panel) { window.location.assign(href); return; }
    if (retry) { panel.querySelector(".offline-still").hidden = false; return; }
    showOffline(panel, item, href);
  }

  document.addEventListener("click", (event) => {
    // the list may have been replaced (nearest first): found at the tap, not held
    const link = event.target.closest("#task-list a.task-link");
    const retry = event.target.closest("#task-offline .offline-retry");
    if (event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey
      || event.altKey) return;  // a new tab, a download: the browser's own
    if (link) { event.preventDefault(); openTask(link.href, link.closest("li.task"), null); }
    if (retry) openTask(retry.closest("#task-offline").dataset.href, retry.closest("li.task"), retry);
  });

  const retired = [];  // the content replaced, kept so that its thumbnails already asked for finish

  function metres(lat1, lon1, lat2, lon2) {
    const rad = Math.PI / 180, r = 6371008.8;
    const dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    const a = Math.sin(dlat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dlon / 2) ** 2;
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(a)));
  }

  function distanceText(m) {
    if (m < 1000) return gp.t("tasks.js.metres", { m: Math.max(10, Math.round(m / 10) * 10) });
    return gp.t("tasks.js.km", { km: (m / 1000).toFixed(m < 10000 ? 1 : 0) });
  }

  function showDistances(list) {
    const latitude = Number(list.dataset.nearLat), longitude = Number(list.dataset.nearLon);
    for (const item of list.querySelectorAll("li.task")) {
      const lat = Number(item.dataset.lat), lon = Number(item.dataset.lon);
      if (item.dataset.lat === undefined || !Number.isFinite(lat) || !Number.isFinite(lon)) {
        item.dataset.distance = "";
        continue;
      }
      const m = metres(latitude, longitude, lat, lon);
      item.dataset.distance = String(Math.round(m));
      const label = item.querySelector(".task-distance");
      if (label) { label.textContent = distanceText(m); label.hidden = false; }
    }
    document.body.dataset.taskOrder = "distance";
  }

  function noPosition(why) {  // why: the catalogue key that says why the list stays in dispatch order
    const note = document.getElementById("task-order");
    if (note) note.textContent = gp.t(typeof why === "string" ? why : "tasks.js.no_position");
    document.body.dataset.taskOrder = "dispatch";
  }

  // a position that comes late (a GPS fix takes seconds) must not reorder the list under a thumb about to
  // tap one of its cases: once the person has touched or scrolled the page, the nearest-first list waits
  // behind a button instead
  let touched = false;
  for (const type of ["pointerdown", "touchstart", "scroll", "keydown"]) {
    window.addEventListener(type, () => { touched = true; }, { passive: true, capture: true, once: true });
  }

  function offer(apply) {
    // at the foot of the screen, over the page: nothing in the list moves when it shows
    const button = gp.el("button", { type: "button", class: "primary", id: "nearest-ready",
      text: gp.t("tasks.js.nearest_ready") });
    button.addEventListener("click", () => { button.remove(); apply(); }, { once: true });
    document.body.append(button);
  }

  async function nearestFirst(position) {
    // the first page ordered from here (the rest of the query, done= and per_page=, kept)
    const { latitude, longitude } = position.coords;
    const url = new URL(window.location.href);
    url.searchParams.set("near", `${latitude.toFixed(5)},${longitude.toFixed(5)}`);
    url.searchParams.delete("page");
    let fresh = null;
    try {
      const response = await fetch(url.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.ok && !response.redirected) {
        fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("main");
      }
    } catch (e) {
      noPosition("tasks.js.no_network");  // the position came, the list could not: the list shown stays
      return;
    }
    const main = document.getElementById("main");
    const list = fresh && fresh.querySelector("#task-list[data-near-lat]");
    if (!main || !list) {  // signed out meanwhile, no tasks left: the page itself says so
      window.location.replace(url.href);
      return;
    }
    const apply = () => {
      retired.push(...main.childNodes);
      main.replaceChildren(...fresh.childNodes);
      window.history.replaceState(null, "", url.href);
      showDistances(list);
    };
    if (touched) offer(apply); else apply();
  }

  if (shown.dataset.nearLat !== undefined) { showDistances(shown); return; }  // ordered from there
  // asked for once: a near= the server refused (named on the page) keeps the dispatch order
  if (new URLSearchParams(window.location.search).has("near")) { noPosition(); return; }
  if (!("geolocation" in navigator) || !window.isSecureContext) { noPosition(); return; }
  navigator.geolocation.getCurrentPosition(nearestFirst, noPosition, {
    enableHighAccuracy: true, timeout: 15000, maximumAge: 60000,
  });
})();
