// Shared by every page: the CSRF token on every state-changing fetch, the catalogue, a flash message,
// and new content in place of the page's #main (a refused form's answer, cases.js): each script sets up
// what it needs on that content (gp.onNewContent) without running again, so that its window listeners
// stay registered once.
"use strict";
(function () {
  const body = document.body;
  const i18nNode = document.getElementById("i18n");
  let strings = {};
  try { strings = JSON.parse(i18nNode ? i18nNode.textContent : "{}"); } catch (e) { strings = {}; }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(strings, key);
  }

  function t(key, values) {
    // a count of 1 takes the key's singular form where the language has one (api/http/i18n.py)
    if (values && Number(values.count) === 1 && has(key + "#one")) key += "#one";
    // a category of the site's own rules, without a text of its own, is shown by its name
    const fallback = key.startsWith("category.") ? key.slice("category.".length) : key;
    let text = has(key) ? strings[key] : fallback;
    if (values) for (const [k, v] of Object.entries(values)) text = text.split("{" + k + "}").join(String(v));
    return text;
  }

  function flash(message, kind, extra) {  // extra: a node after the message (a link), or none
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;  // text, never HTML
    if (extra) box.append(" ", extra);
    box.className = "flash" + (kind ? " " + kind : "");
    box.hidden = !message;
  }

  async function request(url, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    const method = (opts.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = body.dataset.csrf || "";
    opts.headers["Accept"] = opts.headers["Accept"] || "application/json";
    const response = await fetch(url, opts);
    return response;
  }

  async function errorText(response) {
    try {
      const data = await response.json();
      return data.detail || response.statusText;
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // each script's setup for content put in place of #main (its forms, pictures, editors): the page's
  // own content was set up when the script ran
  const setups = [];
  function onNewContent(setup) { setups.push(setup); }

  function replaceMain(answer) {
    // answer: a parsed page of this site (DOMParser); false when it has no #main to take the place of
    // this page's (the caller then says what came back in its own words)
    const main = document.getElementById("main"), fresh = answer.getElementById("main");
    if (!main || !fresh) return false;
    document.title = answer.title;
    body.className = answer.body.className;
    if (answer.body.dataset.csrf) body.dataset.csrf = answer.body.dataset.csrf;
    main.replaceChildren(...Array.from(fresh.childNodes));  // a snapshot: moving them empties the list
    for (const setup of setups) setup(main);
    return true;
  }

  window.gp = {
    t, flash, request, errorText, el, onNewContent, replaceMain, csrf: () => body.dataset.csrf || "",
  };
})();
