// My tasks, nearest first: when the browser gives the phone's position, the list (rendered sent back
// first, then oldest dispatch first) is sorted by straight-line distance to each case, the cases sent
// back still first, and each shows how far it is; without a position the server's order stays.
"use strict";
(function () {
  const list = document.getElementById("task-list");
  const note = document.getElementById("task-order");
  if (!list) return;

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

  function sortByDistance(position) {
    const { latitude, longitude } = position.coords;
    const items = [...list.querySelectorAll("li.task")];
    for (const item of items) {
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
    const far = (item) => (item.dataset.distance === "" ? Infinity : Number(item.dataset.distance));
    const back = (item) => (item.dataset.sentBack ? 0 : 1);  // a case sent back stays first
    items.sort((a, b) => (back(a) - back(b)) || (far(a) - far(b)) || (Number(a.dataset.order) - Number(b.dataset.order)));
    list.append(...items);
    if (note) note.textContent = gp.t("tasks.js.nearest");
    document.body.dataset.taskOrder = "distance";
  }

  function noPosition() {
    if (note) note.textContent = gp.t("tasks.js.no_position");
    document.body.dataset.taskOrder = "dispatch";
  }

  if (!("geolocation" in navigator) || !window.isSecureContext) { noPosition(); return; }
  navigator.geolocation.getCurrentPosition(sortByDistance, noPosition, {
    enableHighAccuracy: true, timeout: 15000, maximumAge: 60000,
  });
})();
