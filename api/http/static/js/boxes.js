// The case page's box editor (operators and admins): on a sighting's raw frame, draw a box by dragging
// (mouse, pen or touch: pointer events), give it a model class and say whether it corrects the
// detection or adds a missed object; mark a labelled box for removal; save them in one
// POST /api/cases/{id}/boxes. Boxes are kept in pixels of the frame (its natural size); the svg over
// the picture has that size as its viewBox, so only the pointer's position is converted. The page
// renders the labelled boxes (what was saved); a save that fails keeps the boxes not yet saved, and
// leaving the page while some are not saved asks first (the browser's own "leave the page?"). A move
// the service refused (the case moved meanwhile) puts its answer in place of the page's content
// (gp.replaceMain): the boxes not saved go over to the new content's editor of the same frame, open,
// saying so, never thrown away.
"use strict";
(function () {
  const caseId = document.getElementById("case").dataset.caseId;
  const SVG = "http://www.w3.org/2000/svg";
  const MIN_DRAG_PX = 4;  // a shorter drag on the screen is a click, not a box
  const editors = [];  // each editor's state: boxes drawn or marked and not saved keep the page

  function clamp(v, low, high) { return Math.min(high, Math.max(low, v)); }

  function boxText(box) {
    return [box.x1, box.y1].map(Math.round).join(", ") + " – " + [box.x2, box.y2].map(Math.round).join(", ");
  }

  function sameBox(a, b) {
    return a.x1 === b.x1 && a.y1 === b.y1 && a.x2 === b.x2 && a.y2 === b.y2 && a.class_name === b.class_name;
  }

  // kept: the boxes not saved of this frame's editor in the content this one took the place of
  function setup(editor, kept) {
    const img = editor.querySelector(".box-canvas img");
    const svg = editor.querySelector(".box-canvas svg");
    const classSelect = editor.querySelector("select.box-class");
    const labelledList = editor.querySelector("ol.labelled-boxes");
    const pendingList = editor.querySelector("ol.pending-boxes");
    const errorLine = editor.querySelector(".box-error");
    const savedLine = editor.querySelector(".box-saved");
    const saveButton = editor.querySelector("button.save-boxes");
    const sightingId = Number(editor.dataset.sightingId);
    const classLabels = Object.fromEntries([...classSelect.options].map((o) => [o.value, o.textContent]));
    const state = {
      // what the page rendered: the boxes labelled on the frame now (the server's word)
      labelled: [...labelledList.children].map((li) => ({
        x1: Number(li.dataset.x1), y1: Number(li.dataset.y1), x2: Number(li.dataset.x2), y2: Number(li.dataset.y2),
        class_name: li.dataset.className, source: li.dataset.source,
      })),
      // {op, x1, y1, x2, y2, class_name}: drawn or marked, not saved yet
      pending: (kept || []).map((p) => ({ ...p })),
      sightingId,
      refused: -1,  // the index of the pending box the last save was refused for
      sending: false,
    };
    editors.push(state);
    if (state.pending.length) {
      editor.open = true;  // in sight, with a line saying they are kept and still to be saved
      savedLine.textContent = gp.t("cases.js.boxes.kept", { count: state.pending.length });
      savedLine.hidden = false;
      saveButton.disabled = false;
    }
    let size = null;  // the frame's natural width and height, once loaded
    let draft = null;  // the box being dragged: {start: [x, y], rect, pointer}

    const label = (name) => classLabels[name] || name;
    const op = () => editor.querySelector("input[type=radio]:checked").value;

    function rect(box, css) {
      const node = document.createElementNS(SVG, "rect");
      node.setAttribute("class", css);
      node.setAttribute("x", box.x1); node.setAttribute("y", box.y1);
      node.setAttribute("width", box.x2 - box.x1); node.setAttribute("height", box.y2 - box.y1);
      return node;
    }

    function removing(box) {
      return state.pending.findIndex((p) => p.op === "remove" && sameBox(p, box));
    }

    function render() {
      const keep = draft ? [draft.rect] : [];
      svg.replaceChildren(
        ...state.labelled.map((b) => rect(b, `labelled ${b.source}${removing(b) >= 0 ? " removing" : ""}`)),
        ...state.pending.filter((p) => p.op !== "remove").map((p) => rect(p, `pending ${p.op}`)),
        ...keep,
      );
      labelledList.replaceChildren(...state.labelled.map((box) => {
        const marked = removing(box) >= 0;
        const button = gp.el("button", {
          type: "button", class: "link box-remove",
          text: gp.t(marked ? "cases.js.boxes.keep" : "cases.js.boxes.remove"),
        });
        button.addEventListener("click", () => {
          if (state.sending) return;
          const at = removing(box);
          if (at >= 0) state.pending.splice(at, 1);
          else state.pending.push({ op: "remove", x1: box.x1, y1: box.y1, x2: box.x2, y2: box.y2, class_name: box.class_name });
          changed();
        });
        return gp.el("li", { class: marked ? "removing" : null, "data-class-name": box.class_name, "data-source": box.source }, [
          gp.el("span", { class: "box-name", text: label(box.class_name) }),
          " · " + gp.t("cases.js.boxes.source." + box.source) + " ",
          gp.el("span", { class: "muted small", text: boxText(box) }), " ", button,
        ]);
      }));
      editor.querySelector(".no-boxes").hidden = state.labelled.length > 0;
      pendingList.replaceChildren(...state.pending.map((p, i) => {
        const discard = gp.el("button", { type: "button", class: "link box-discard", text: gp.t("cases.js.boxes.discard") });
        discard.addEventListener("click", () => {
          if (state.sending) return;
          state.pending.splice(i, 1);
          changed();
        });
        return gp.el("li", { class: `${p.op}${i === state.refused ? " refused" : ""}`, "data-op": p.op, "data-class-name": p.class_name }, [
          gp.el("span", { class: "box-name", text: label(p.class_name) }),
          " · " + gp.t("cases.js.boxes.op." + p.op) + " ",
          gp.el("span", { class: "muted small", text: boxText(p) }), " ", discard,
        ]);
      }));
      editor.querySelector(".no-pending").hidden = state.pending.length > 0;
      editor.querySelector(".box-count").textContent = gp.t("cases.js.boxes.count", { count: state.labelled.length });
      saveButton.disabled = state.sending || state.pending.length === 0;
    }

    function changed() {
      state.refused = -1;
      errorLine.hidden = true;
      savedLine.hidden = true;
      render();
    }

    // --- drawing: the pointer's place on the screen -> pixels of the frame

    function framePoint(event) {
      const r = svg.getBoundingClientRect();
      return [
        Math.round(clamp((event.clientX - r.left) / r.width, 0, 1) * size[0]),
        Math.round(clamp((event.clientY - r.top) / r.height, 0, 1) * size[1]),
      ];
    }

    function draftBox(event) {
      const [x, y] = framePoint(event);
      const [sx, sy] = draft.start;
      return { x1: Math.min(x, sx), y1: Math.min(y, sy), x2: Math.max(x, sx), y2: Math.max(y, sy) };
    }

    svg.addEventListener("pointerdown", (event) => {
      if (!size || state.sending || event.button !== 0) return;
      event.preventDefault();
      svg.setPointerCapture(event.pointerId);
      draft = { start: framePoint(event), screen: [event.clientX, event.clientY], pointer: event.pointerId, rect: rect({ x1: 0, y1: 0, x2: 0, y2: 0 }, "draft") };
      svg.append(draft.rect);
    });
    svg.addEventListener("pointermove", (event) => {
      if (!draft || event.pointerId !== draft.pointer) return;
      const box = draftBox(event);
      for (const [k, v] of Object.entries({ x: box.x1, y: box.y1, width: box.x2 - box.x1, height: box.y2 - box.y1 })) {
        draft.rect.setAttribute(k, v);
      }
    });
    svg.addEventListener("pointerup", (event) => {
      if (!draft || event.pointerId !== draft.pointer) return;
      const box = draftBox(event);
      const moved = Math.hypot(event.clientX - draft.screen[0], event.clientY - draft.screen[1]);
      draft = null;
      if (moved < MIN_DRAG_PX || box.x2 - box.x1 < 1 || box.y2 - box.y1 < 1) { render(); return; }
      const kind = op();
      // the detection has one box: a new correction replaces one not saved yet
      if (kind === "correct") state.pending = state.pending.filter((p) => p.op !== "correct");
      state.pending.push({ op: kind, ...box, class_name: classSelect.value });
      changed();
    });
    svg.addEventListener("pointercancel", () => { draft = null; render(); });

    // --- saving

    function refusal(response, data) {
      if (response.status === 401) return gp.t("cases.js.boxes.session_ended");
      const first = data && Array.isArray(data.errors) ? data.errors[0] : null;
      // the service names a box boxes[i] (api.cases.review_labels), the body's checks boxes.i.field
      const which = first && /^boxes(?:\[(\d+)\]|\.(\d+))/.exec(first.field || "");
      const index = which ? Number(which[1] || which[2]) : -1;
      if (response.status === 422 && index >= 0 && index < state.pending.length) {
        state.refused = index;
        const p = state.pending[state.refused];
        return gp.t("cases.js.boxes.refused_box", {
          n: state.refused + 1, box: `${label(p.class_name)} · ${gp.t("cases.js.boxes.op." + p.op)}`, reason: first.reason,
        });
      }
      const detail = (data && data.detail) || `${response.status} ${response.statusText}`;
      return gp.t("cases.js.boxes.refused", { detail });
    }

    async function save() {
      if (state.sending || !state.pending.length) return;
      state.sending = true;
      errorLine.hidden = true;
      savedLine.hidden = true;
      render();
      const sent = state.pending.map((p) => ({ ...p }));
      let message = "";
      try {
        const response = await gp.request(`/api/cases/${caseId}/boxes`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ sighting_id: sightingId, boxes: sent }),
        });
        let data = null;
        try { data = await response.json(); } catch (e) { data = null; }
        if (response.ok && data) {
          state.labelled = data.boxes.map((b) => ({ ...b.box, source: b.source }));
          state.pending = [];  // (nothing is drawn or discarded while sending)
          savedLine.textContent = gp.t("cases.js.boxes.saved", { count: state.labelled.length });
          savedLine.hidden = false;
        } else {
          message = refusal(response, data);
        }
      } catch (err) {
        message = gp.t("cases.js.boxes.unreachable", { detail: err.message });
      }
      state.sending = false;
      render();
      if (message) {
        errorLine.textContent = message;  // text, never HTML
        errorLine.hidden = false;
      }
    }
    saveButton.addEventListener("click", save);

    function sized() {
      if (!img.naturalWidth) return;
      size = [img.naturalWidth, img.naturalHeight];
      svg.setAttribute("viewBox", `0 0 ${size[0]} ${size[1]}`);
      // the whole frame in sight while drawing: at most three quarters of the screen's height
      img.parentElement.style.width = `min(100%, ${(75 * size[0] / size[1]).toFixed(2)}vh)`;
      editor.classList.add("ready");
      render();
    }
    if (img.complete) sized(); else img.addEventListener("load", sized, { once: true });
  }

  document.querySelectorAll("details.box-editor").forEach((editor) => setup(editor));
  // the page's content replaced (a refused form's answer, cases.js): its editors are new, those gone
  // with the old content no longer keep the page; their boxes not saved go to the new editor of the
  // same frame (one being saved as the form went is left to that save: sent again, it would be doubled)
  gp.onNewContent((root) => {
    const kept = new Map();
    for (const state of editors) {
      if (state.pending.length && !state.sending) kept.set(state.sightingId, state.pending);
    }
    editors.length = 0;
    root.querySelectorAll("details.box-editor").forEach((editor) => {
      setup(editor, kept.get(Number(editor.dataset.sightingId)));
    });
  });
  // leaving the page (a link, a move's form, a reload, closing the tab) with boxes not saved asks first:
  // they live only on this page
  window.addEventListener("beforeunload", (event) => {
    if (!editors.some((state) => state.pending.length)) return;
    event.preventDefault();
    event.returnValue = "";
  });
})();
