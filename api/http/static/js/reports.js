// The periodic report: when it is printed, the time at the foot of each page (the district's local
// time, from the page's <style id="page-margins">) is the time of printing, not of loading the page.
"use strict";
(function () {
  const margins = document.getElementById("page-margins");
  if (!margins) return;
  const offsetMinutes = Number(margins.dataset.offsetMinutes) || 0;

  function stamp() {
    const local = new Date(Date.now() + offsetMinutes * 60000).toISOString(); // UTC fields = local
    return local.slice(0, 10) + " " + local.slice(11, 16);
  }

  window.addEventListener("beforeprint", () => {
    const now = stamp();
    margins.textContent = margins.textContent.replace(margins.dataset.printed, now);
    margins.dataset.printed = now;
  });
})();
