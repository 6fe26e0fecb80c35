// Uploading footage: files chosen or dropped (a video and, optionally, its GPS track, told apart by
// type and name), sent to POST /api/uploads with XMLHttpRequest (fetch reports no upload progress);
// footage over RESUMABLE_BYTES goes in chunks instead (/api/upload-sessions: hashed here first, a
// failed chunk retried with backoff, the upload going on from the server's offset when the network
// returns), then the job polled every second (GET /api/jobs/{id}) until it is done or failed, then
// the cases it produced (the page's fragment GET /upload/jobs/{id}/cases). A refused upload shows the
// API's detail (footage or a track of a type not read: in the page's language, naming the file), a
// failed job its error. The start time is the camera's clock, sent at the chosen camera's UTC offset.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("dropzone");
  const fileInput = document.getElementById("file");
  const trackInput = document.getElementById("track");
  const trackClear = document.getElementById("track-clear");
  const submit = document.getElementById("upload-submit");
  const cancel = document.getElementById("upload-cancel");
  const statusBox = document.getElementById("upload-status");
  const sendBar = document.getElementById("send-bar");
  const sendText = document.getElementById("send-text");
  const jobStep = document.getElementById("step-job");
  const jobTitle = document.getElementById("job-title");
  const jobBar = document.getElementById("job-bar");
  const jobText = document.getElementById("job-text");
  const messageBox = document.getElementById("upload-message");
  const casesBox = document.getElementById("job-cases");
  const recent = document.getElementById("recent-uploads");
  const recentMore = document.getElementById("recent-more");
  const startZone = document.getElementById("start-zone");
  const clocks = JSON.parse(document.getElementById("camera-clocks").textContent || "{}");
  const maxFile = Number(form.dataset.maxFile);
  const maxTrack = Number(form.dataset.maxTrack);
  const lang = document.body.dataset.lang || "zh-CN";
  const VIDEO_NAME = /\.(mp4|m4v|mov|3gp|mkv|webm|avi|flv|mpe?g|ts|mts|m2ts)$/i;
  const TRACK_NAME = /\.(gpx|nmea|gps|log|txt|csv)$/i;  // .gps: BlackVue; .log, .txt: Novatek NMEA
  const POLL_MS = 1000;
  const RESUMABLE_BYTES = 8 * 1024 ** 2;  // larger footage goes in chunks, resumable after a drop
  const CHUNK_BYTES = 4 * 1024 ** 2;
  const MAX_BACKOFF_MS = 30000;
  const RECENT = [10, 50];  // recent uploads listed, and after "more"
  let recentLimit = RECENT[0];
  let sending = null;  // the XMLHttpRequest under way
  let resumable = null;  // the chunked upload under way: {cancelled, sessionId}
  let names = { file: "", track: "" };  // the files being sent, as chosen: a refusal names them

  function setState(state) { document.body.dataset.uploadState = state; }

  function sizeText(bytes) {
    if (bytes >= 1024 ** 3) return (bytes / 1024 ** 3).toFixed(2) + " GB";
    if (bytes >= 1024 ** 2) return (bytes / 1024 ** 2).toFixed(1) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(lang, { hour12: false });
  }

  function say(text, kind) {
    messageBox.textContent = text;  // text, never HTML: job errors and API details are shown as given
    messageBox.className = "upload-message" + (kind ? " " + kind : "");
  }

  // --- choosing files: the two inputs hold them, whether picked or dropped ---

  function showChosen() {
    for (const [input, nameId, emptyKey] of [[fileInput, "file-name", "upload.file.none"], [trackInput, "track-name", "upload.track.none"]]) {
      const file = input.files[0];
      const name = document.getElementById(nameId);
      name.textContent = file ? file.name + " (" + sizeText(file.size) + ")" : gp.t(emptyKey);
      input.closest(".drop-slot").classList.toggle("chosen", Boolean(file));
    }
    trackClear.hidden = !trackInput.files.length;
  }

  function put(input, file) {
    const files = new DataTransfer();
    files.items.add(file);
    input.files = files.files;
  }

  function isTrack(file) { return TRACK_NAME.test(file.name) || /gpx|nmea|csv/.test(file.type); }
  function isVideo(file) { return file.type.startsWith("video/") || VIDEO_NAME.test(file.name); }

  function dropped(files) {
    const unknown = [];
    for (const file of files) {
      if (isTrack(file)) put(trackInput, file);
      else if (isVideo(file)) put(fileInput, file);
      else unknown.push(file.name);
    }
    showChosen();
    gp.flash(unknown.length ? gp.t("upload.drop.unknown", { names: unknown.join(", ") }) : "", "error");
  }

  fileInput.addEventListener("change", showChosen);
  trackInput.addEventListener("change", showChosen);
  trackClear.addEventListener("click", () => { trackInput.value = ""; showChosen(); });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (sending || resumable) return;
    dropped([...(event.dataTransfer ? event.dataTransfer.files : [])]);
  });
  // a file dropped beside the zone must not make the browser leave the page to show it
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  // leaving the page (a link, a reload, the tab closed) mid-upload would lose footage sent in one request
  // and stop one sent in chunks: the browser asks first
  window.addEventListener("beforeunload", (event) => {
    if (!sending && !resumable) return;
    event.preventDefault();
    event.returnValue = "";
  });

  // --- the start time: the camera's clock (a dashcam's burnt-in time), not the browser's time zone ---

  const WALL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/;

  // the camera's clock as the service reads a start time without an offset: a camera of the site
  // config in its time zone, no camera in the default camera's, another at the site's offset
  function cameraClock() {
    const camera = form.elements.camera_id.value.trim();
    const known = camera ? (clocks.cameras || {})[camera] : clocks.default;
    return known || { zone: null, minutes: clocks.site_minutes || 0 };
  }

  // a zone's offset from UTC in minutes at an instant (ms), as the browser's time zone data has it
  function zoneMinutes(zone, ms) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric", second: "numeric",
    }).formatToParts(new Date(ms));
    const part = (type) => Number(parts.find((p) => p.type === type).value);
    const wall = Date.UTC(part("year"), part("month") - 1, part("day"), part("hour"), part("minute"), part("second"));
    return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
  }

  // the camera's offset in minutes at a wall time of its clock (ms as if UTC; now when none)
  function clockMinutes(clock, wallMs) {
    if (!clock.zone) return clock.minutes;
    try {
      if (wallMs === undefined) return zoneMinutes(clock.zone, Date.now());
      return zoneMinutes(clock.zone, wallMs - 60000 * zoneMinutes(clock.zone, wallMs));
    } catch (e) {
      return clock.minutes === null || clock.minutes === undefined ? clocks.site_minutes || 0 : clock.minutes;
    }
  }

  function offsetText(minutes) {
    const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
    return (minutes < 0 ? "-" : "+") + pad(minutes / 60) + ":" + pad(minutes % 60);
  }

  function wallTime(value) {
    const m = WALL.exec(value);
    if (!m) return null;
    const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    return isNaN(ms) ? null : { ms, text: m[1] + "-" + m[2] + "-" + m[3] + "T" + m[4] + ":" + m[5] + ":" + (m[6] || "00") };
  }

  function startTime(value) {
    // the datetime-local field holds the camera's clock: sent with the camera's UTC offset at that time
    if (!value) return "";
    const wall = wallTime(value);
    if (!wall) return null;
    return wall.text + offsetText(clockMinutes(cameraClock(), wall.ms));
  }

  function showZone() {
    const wall = wallTime(form.elements.start_time.value);
    const minutes = clockMinutes(cameraClock(), wall ? wall.ms : undefined);
    startZone.textContent = gp.t("upload.start.zone", { offset: "UTC" + offsetText(minutes) });
  }

  form.elements.camera_id.addEventListener("input", showZone);
  form.elements.start_time.addEventListener("input", showZone);

  // --- sending ---

  function checkForm() {
    const file = fileInput.files[0];
    const track = trackInput.files[0];
    if (!file) return gp.t("upload.error.no_file");
    if (file.size > maxFile) return gp.t("upload.error.too_big", { name: file.name, limit: sizeText(maxFile) });
    if (track && track.size > maxTrack) return gp.t("upload.error.too_big", { name: track.name, limit: sizeText(maxTrack) });
    if (startTime(form.elements.start_time.value) === null) return gp.t("upload.error.start_time");
    return "";
  }

  function busy(on) {
    submit.disabled = on;
    cancel.hidden = !on;
    fileInput.disabled = trackInput.disabled = on;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (sending || resumable) return;
    gp.flash("");
    const problem = checkForm();
    if (problem) { gp.flash(problem, "error"); return; }
    const data = new FormData();
    const camera = form.elements.camera_id.value.trim();
    if (camera) data.append("camera_id", camera);
    const start = startTime(form.elements.start_time.value);
    if (start) data.append("start_time", start);
    names = { file: fileInput.files[0].name, track: trackInput.files[0] ? trackInput.files[0].name : "" };
    if (fileInput.files[0].size > RESUMABLE_BYTES) {
      sendInChunks(fileInput.files[0], trackInput.files[0], camera, start);
      return;
    }
    data.append("file", fileInput.files[0]);
    if (trackInput.files[0]) data.append("track", trackInput.files[0]);
    send(data);
  });

  cancel.addEventListener("click", () => {
    if (resumable) resumable.cancelled = true;
    if (sending) sending.abort();
  });

  function startSending() {
    statusBox.hidden = false;
    jobStep.hidden = true;
    casesBox.replaceChildren();
    sendBar.value = 0;
    sendText.textContent = "0%";
    say("");
    busy(true);
    setState("sending");
  }

  function showSent(loaded, total) {
    sendBar.value = loaded / total;
    sendText.textContent = Math.floor((100 * loaded) / total) + "% · " +
      sizeText(loaded) + " / " + sizeText(total);
  }

  function received(body) {
    sendBar.value = 1;
    sendText.textContent = gp.t("upload.send.done");
    fileInput.value = "";
    trackInput.value = "";
    showChosen();
    follow(body);
  }

  function refused(detail) {
    sendText.textContent = "";
    say(gp.t("upload.refused", { detail }), "error");
    setState("refused");
  }

  // a refusal's words: footage or a track of a type the service does not read (415) in the page's
  // language, naming the file as chosen; anything else as the API says it
  function refusal(status, body, statusText) {
    const error = body && body.errors && body.errors[0];
    if (status === 415 && error && (error.field === "file" || error.field === "track")) {
      const key = error.field === "file" ? "upload.error.not_video" : "upload.error.not_track";
      return gp.t(key, { name: names[error.field] || error.field });
    }
    return body && body.detail ? body.detail : status + " " + statusText;
  }

  function send(data) {
    startSending();
    const xhr = new XMLHttpRequest();
    sending = xhr;
    xhr.open("POST", "/api/uploads");
    xhr.setRequestHeader("X-CSRF-Token", gp.csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) showSent(event.loaded, event.total);
    });
    xhr.upload.addEventListener("load", () => { sendText.textContent = gp.t("upload.send.checking"); });
    xhr.addEventListener("load", () => {
      sending = null;
      busy(false);
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if ((xhr.status === 200 || xhr.status === 201) && body) {
        received(body);
        return;
      }
      refused(refusal(xhr.status, body, xhr.statusText));
    });
    xhr.addEventListener("error", () => {
      sending = null;
      busy(false);
      say(gp.t("upload.error.network"), "error");
      setState("refused");
    });
    xhr.addEventListener("abort", () => {
      sending = null;
      busy(false);
      sendText.textContent = "";
      say(gp.t("upload.cancelled"));
      setState("cancelled");
    });
    xhr.send(data);
  }

  // --- footage in chunks: resumable after a dropped connection ---

  // one request: XMLHttpRequest for its upload progress; a network failure is status 0
  function exchange(method, url, body, onProgress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      sending = xhr;
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRF-Token", gp.csrf());
      xhr.setRequestHeader("Accept", "application/json");
      if (body instanceof Blob) xhr.setRequestHeader("Content-Type", "application/octet-stream");
      else if (typeof body === "string") xhr.setRequestHeader("Content-Type", "application/json");
      if (onProgress) xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
      const done = (aborted) => () => {
        sending = null;
        let json = null;
        try { json = JSON.parse(xhr.responseText); } catch (e) { json = null; }
        resolve({ status: aborted ? -1 : xhr.status, body: json, statusText: xhr.statusText });
      };
      xhr.addEventListener("load", done(false));
      xhr.addEventListener("error", done(false));
      xhr.addEventListener("timeout", done(false));
      xhr.addEventListener("abort", done(true));
      xhr.send(body === undefined ? null : body);
    });
  }

  // a status worth trying again: the network (0), the server busy or restarting, or a chunk of
  // this upload still being received from before the drop (409 without a new offset)
  const passing = (r) => r.status === 0 || r.status === 408 || r.status === 429 || r.status >= 500;

  function waitOnline() {
    if (navigator.onLine !== false) return Promise.resolve();
    return new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
  }

  async function backoff(failures, sent, total) {
    const ms = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures - 1, 5));
    if (navigator.onLine === false) {
      sendText.textContent = gp.t("upload.send.offline", { sent: sizeText(sent), total: sizeText(total) });
      setState("offline");
      await waitOnline();
    } else {
      sendText.textContent = gp.t("upload.send.retry", {
        seconds: Math.round(ms / 1000), sent: sizeText(sent), total: sizeText(total),
      });
      setState("retrying");
      await sleep(ms);
    }
    setState("sending");
  }

  // the footage's SHA-256, read in chunks (crypto.subtle digests only a whole buffer: 4 GB would not fit)
  async function hashFile(file, job) {
    const hash = new Sha256();
    for (let at = 0; at < file.size; at += CHUNK_BYTES) {
      if (job.cancelled) return null;
      hash.update(new Uint8Array(await file.slice(at, at + CHUNK_BYTES).arrayBuffer()));
      sendBar.value = Math.min(at + CHUNK_BYTES, file.size) / file.size;
      sendText.textContent = gp.t("upload.send.hashing", { percent: Math.floor(100 * sendBar.value) });
    }
    return hash.hex();
  }

  // a request repeated with backoff while it fails for a passing reason; null when cancelled
  async function persist(job, attempt, sent, total) {
    let failures = 0;
    for (;;) {
      if (job.cancelled) return null;
      const r = await attempt();
      if (r.status === -1 || job.cancelled) return null;
      if (!passing(r)) return r;
      failures += 1;
      await backoff(failures, sent, total);
    }
  }

  async function sendInChunks(file, track, camera, start) {
    const job = { cancelled: false, sessionId: null };
    resumable = job;
    startSending();
    setState("hashing");
    try {
      const sha256 = await hashFile(file, job);
      if (sha256 === null) return stopped(job);
      setState("sending");
      const opening = JSON.stringify({
        size: file.size, sha256, filename: file.name, camera_id: camera || null, start_time: start || null,
      });
      const open = () => exchange("POST", "/api/upload-sessions", opening);
      const opened = await persist(job, open, 0, file.size);
      if (opened === null) return stopped(job);
      if (opened.status !== 200 && opened.status !== 201) return refusedBy(opened);
      job.sessionId = opened.body.id;
      let offset = opened.body.offset;
      const url = "/api/upload-sessions/" + job.sessionId;
      showSent(offset, file.size);
      let failures = 0;
      while (offset < file.size) {
        if (job.cancelled) return stopped(job);
        const from = offset;
        const r = await exchange("PATCH", url + "?offset=" + from, file.slice(from, from + CHUNK_BYTES),
          (loaded) => showSent(from + loaded, file.size));
        if (r.status === -1 || job.cancelled) return stopped(job);
        if (r.status === 200) {
          offset = r.body.offset;
          failures = 0;
          continue;
        }
        if (r.status === 409 && r.body && typeof r.body.offset === "number" && r.body.offset !== from) {
          offset = r.body.offset;  // the server has more (or less) than we thought: go on from there
          continue;
        }
        if (!passing(r) && r.status !== 409) return refusedBy(r);
        failures += 1;
        await backoff(failures, from, file.size);
        // where the server stands after the drop (a chunk cut off is not kept)
        const asked = await persist(job, () => exchange("GET", url), from, file.size);
        if (asked === null) return stopped(job);
        if (asked.status !== 200) return refusedBy(asked);
        offset = asked.body.offset;
        showSent(offset, file.size);
      }
      sendText.textContent = gp.t("upload.send.checking");
      const form = new FormData();
      if (track) form.append("track", track);
      const finish = () => exchange("POST", url + "/finish", form);
      const finished = await persist(job, finish, file.size, file.size);
      if (finished === null) return stopped(job);
      if ((finished.status === 200 || finished.status === 201) && finished.body) {
        resumable = null;
        busy(false);
        received(finished.body);
        return;
      }
      return refusedBy(finished);
    } catch (err) {
      resumable = null;
      busy(false);
      refused(String(err));
    }
  }

  function refusedBy(r) {
    resumable = null;
    busy(false);
    refused(refusal(r.status, r.body, r.statusText));
  }

  function stopped(job) {
    resumable = null;
    busy(false);
    sendText.textContent = "";
    say(gp.t("upload.cancelled"));
    setState("cancelled");
    // cancelled: the server's copy is given up too
    if (!job.sessionId) return;
    gp.request("/api/upload-sessions/" + job.sessionId, { method: "DELETE" }).catch(() => {});
  }

  // SHA-256 (FIPS 180-4) fed in pieces, for files too large to hash in one buffer
  function Sha256() {
    this.h = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.block = new Uint8Array(64);
    this.filled = 0;
    this.length = 0;
    this.w = new Int32Array(64);
  }
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  Sha256.prototype.compress = function (bytes, at) {
    const w = this.w;
    const h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + 4 * i;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15];
      const b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  };
  Sha256.prototype.update = function (bytes) {
    let at = 0;
    this.length += bytes.length;
    if (this.filled) {
      const take = Math.min(64 - this.filled, bytes.length);
      this.block.set(bytes.subarray(0, take), this.filled);
      this.filled += take;
      at = take;
      if (this.filled < 64) return;
      this.compress(this.block, 0);
      this.filled = 0;
    }
    for (; at + 64 <= bytes.length; at += 64) this.compress(bytes, at);
    this.block.set(bytes.subarray(at), 0);
    this.filled = bytes.length - at;
  };
  Sha256.prototype.hex = function () {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.filled < 56 ? 64 - this.filled : 128 - this.filled);
    tail[0] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(tail.length - 4, bits >>> 0);
    this.update(tail);
    return Array.from(this.h, (x) => (x >>> 0).toString(16).padStart(8, "0")).join("");
  };

  // --- the job ---

  function showJob(job) {
    jobStep.hidden = false;
    jobTitle.textContent = gp.t("upload.step.job", { id: job.id });
    jobBar.value = job.progress;
    const parts = [gp.t("upload.job." + job.status), Math.round(100 * job.progress) + "%"];
    if (job.incidents) parts.push(gp.t("upload.job.incidents", { count: job.incidents }));
    if (job.upload && job.upload.has_track) parts.push(trackText(job.upload));
    jobText.textContent = parts.join(" · ");
    statusBox.dataset.jobId = String(job.id);
    statusBox.dataset.jobStatus = job.status;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // footage the service had before (a colleague sent it, or this sender earlier): said above the job's
  // outcome, which is then that earlier upload's (its camera and start time, not those just typed), or
  // a corrected run of it (a resend with another start time, camera or track raised its revision)
  function againNote(receipt) {
    if (receipt.created) return "";
    const corrected = receipt.revision > 0 && !receipt.finished_at && receipt.attempts === 0;
    if (corrected) return gp.t("upload.again_corrected", { id: receipt.id, revision: receipt.revision });
    return gp.t("upload.again", { id: receipt.id });
  }

  async function follow(receipt) {
    setState("job");
    loadRecent();
    const again = againNote(receipt);
    const withAgain = (text) => (again ? again + "\n" + text : text);
    if (again) say(again);
    let job = receipt;
    showJob(job);
    while (job.status === "queued" || job.status === "running") {
      await sleep(POLL_MS);
      let response;
      try {
        response = await gp.request("/api/jobs/" + receipt.id);
      } catch (err) {
        continue;  // the network blinked: ask again
      }
      if (!response.ok) {
        say(gp.t("error.request", { detail: await gp.errorText(response) }), "error");
        setState("failed");
        return;
      }
      job = await response.json();
      showJob(job);
    }
    loadRecent();
    if (job.status === "failed") {
      say(withAgain(gp.t("upload.job.error", { error: job.error || gp.t("common.unknown") })), "error");
      setState("failed");
      return;
    }
    if (job.warning) {
      // the GPS track placed few or none of the footage's frames: the job is done, but says so
      let text = gp.t("upload.job.finished_warning", { count: job.incidents, warning: job.warning });
      // a track that passed no grid cell: the API's warning is English, the way out is told in the page's
      if (job.track_off_grid) text += "\n" + gp.t("upload.job.off_grid_resend");
      say(withAgain(text), "warning");
    } else {
      say(withAgain(gp.t("upload.job.finished", { count: job.incidents })), "ok");
    }
    await showCases(job.id);
    setState("done");
  }

  async function showCases(jobId) {
    const response = await gp.request("/upload/jobs/" + jobId + "/cases", { headers: { Accept: "text/html" } });
    if (!response.ok) {
      gp.flash(gp.t("error.request", { detail: await gp.errorText(response) }), "error");
      return;
    }
    casesBox.innerHTML = await response.text();  // rendered by the server, autoescaped
  }

  // --- recent uploads ---

  function revisionBadge(revision) {
    // revision 0 is footage as first sent; each corrected resend (camera, start time, track) raises it
    if (!revision) return [];
    return [" ", gp.el("span", {
      class: "badge revision",
      title: gp.t("upload.recent.revision_note"),
      text: gp.t("upload.recent.revision", { revision: revision }),
    })];
  }

  function trackText(upload) {
    // the track by the name it was sent as (sanitised by the server), as the job's messages name it
    if (!upload.track_filename) return gp.t("upload.recent.track");
    return gp.t("upload.recent.track_named", { name: "'" + upload.track_filename + "'" });
  }

  function jobCell(upload) {
    // the latest job's status, with its warning or error to open: a crew member back on the page later
    // (or a colleague) reads why a "done" job's track placed nothing, or why it failed, as the job said
    if (!upload.job_status) return gp.el("td", { text: "–" });
    const status = gp.t("upload.job." + upload.job_status);
    const note = upload.job_status === "failed" ? upload.job_error : upload.job_warning;
    if (!note) return gp.el("td", { text: status });
    const failed = upload.job_status === "failed";
    const summary = failed ? gp.t("upload.recent.job_error", { status }) : gp.t("upload.recent.job_warning", { status });
    return gp.el("td", {}, [gp.el("details", { class: "job-note " + (failed ? "error" : "warning") }, [
      gp.el("summary", { text: summary }),
      gp.el("p", { text: note }),
    ])]);
  }

  function casesCell(upload) {
    // a done upload's cases: the case list filtered to those its jobs filed, less those a corrected
    // resend's run superseded (rejected as its duplicates: the run the crew corrected is the one that counts)
    if (upload.job_status !== "done") return gp.el("td", { text: "–" });
    return gp.el("td", {}, [gp.el("a", {
      class: "upload-cases", href: `/cases?upload=${upload.id}&superseded=false`,
      text: gp.t("upload.recent.cases_link"),
    })]);
  }

  async function loadRecent() {
    const response = await gp.request("/api/uploads?limit=" + recentLimit);
    if (!response.ok) return;
    const listing = await response.json();
    recentMore.hidden = recentLimit >= RECENT[1] || listing.items.length < recentLimit;
    const rows = listing.items.map((u) => gp.el("tr", { "data-upload": u.id }, [
      gp.el("td", {}, [
        (u.filename || u.sha256.slice(0, 12)) + (u.has_track ? " + " + trackText(u) : ""),
        ...revisionBadge(u.revision),
      ]),
      gp.el("td", { text: u.camera_id || "–" }),
      gp.el("td", { text: when(u.created_at) }),
      jobCell(u),
      casesCell(u),
    ]));
    if (!rows.length) rows.push(gp.el("tr", {}, [gp.el("td", { colspan: 5, class: "muted", text: gp.t("upload.recent.none") })]));
    recent.tBodies[0].replaceChildren(...rows);
  }

  recentMore.addEventListener("click", () => { recentLimit = RECENT[1]; loadRecent(); });

  showChosen();
  showZone();
  loadRecent();
  setState("ready");
})();
