// Boxes drawn over evidence images from the stored boxes (never burnt into the picture).
// A .frame holds an <img> and an <svg>; data-boxes is its boxes, space-separated, each x1,y1,x2,y2 in
// full-frame pixels (the detection's, or those operators left after correcting it; empty: no box)
// and, for a crop, data-window is the crop's x1,y1,x2,y2 in the same pixels.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function numbers(text) {
    if (!text) return null;
    const values = text.split(",").map(Number);
    return values.length === 4 && values.every(Number.isFinite) ? values : null;
  }

  function place(frame) {
    const img = frame.querySelector("img");
    const svg = frame.querySelector("svg");
    const boxes = (frame.dataset.boxes || "").split(" ").map(numbers).filter(Boolean);
    if (!img || !svg || !boxes.length || !img.naturalWidth) { if (svg) svg.style.display = "none"; return; }
    const win = numbers(frame.dataset.window);
    const width = img.naturalWidth, height = img.naturalHeight;
    const rects = boxes.map(([x1, y1, x2, y2]) => {
      if (win) {
        // the crop was scaled from the window to the image's size
        const sx = width / (win[2] - win[0]), sy = height / (win[3] - win[1]);
        x1 = (x1 - win[0]) * sx; x2 = (x2 - win[0]) * sx; y1 = (y1 - win[1]) * sy; y2 = (y2 - win[1]) * sy;
      }
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", Math.max(0, x1)); rect.setAttribute("y", Math.max(0, y1));
      rect.setAttribute("width", Math.max(1, x2 - x1)); rect.setAttribute("height", Math.max(1, y2 - y1));
      return rect;
    });
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren(...rects);
    svg.style.display = "";
  }

  function drawBoxes(root) {
    for (const frame of (root || document).querySelectorAll(".frame[data-boxes]")) {
      const img = frame.querySelector("img");
      if (img && img.complete) place(frame);
      else if (img) img.addEventListener("load", () => place(frame), { once: true });
    }
  }

  window.gpFrames = { drawBoxes };
  document.addEventListener("DOMContentLoaded", () => drawBoxes(document));
  if (window.gp) window.gp.onNewContent(drawBoxes);  // a refused form's answer in place of #main
})();
