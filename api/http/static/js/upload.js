// Uploading footage: files chosen or dropped (a video and, optionally, its GPS track, told apart by
// type and name), sent to POST /api/uploads with XMLHttpRequest (fetch reports no upload progress),
// then the job polled every second (GET /api/jobs/{id}) until it is done or failed, then the cases it
// produced (the page's fragment GET /upload/jobs/{id}/cases). A refused upload shows the API's detail,
// a failed job its error.
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
  const maxFile = Number(form.dataset.maxFile);
  const maxTrack = Number(form.dataset.maxTrack);
  const lang = document.body.dataset.lang || "zh-CN";
  const VIDEO_NAME = /\.(mp4|m4v|mov|3gp|mkv|webm|avi|flv|mpe?g|ts|mts|m2ts)$/i;
  const TRACK_NAME = /\.(gpx|nmea|csv|txt)$/i;
  const POLL_MS = 1000;
  let sending = null;  // the XMLHttpRequest under way

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
    if (sending) return;
    dropped([...(event.dataTransfer ? event.dataTransfer.files : [])]);
  });
  // a file dropped beside the zone must not make the browser leave the page to show it
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  // --- sending ---

  function startTime(value) {
    // the datetime-local field is the browser's local time: sent with its UTC offset
    if (!value) return "";
    const date = new Date(value);
    if (isNaN(date)) return null;
    const minutes = -date.getTimezoneOffset();
    const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
    const withSeconds = value.length === 16 ? value + ":00" : value;
    return withSeconds + (minutes < 0 ? "-" : "+") + pad(minutes / 60) + ":" + pad(minutes % 60);
  }

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
    if (sending) return;
    gp.flash("");
    const problem = checkForm();
    if (problem) { gp.flash(problem, "error"); return; }
    const data = new FormData();
    const camera = form.elements.camera_id.value.trim();
    if (camera) data.append("camera_id", camera);
    const start = startTime(form.elements.start_time.value);
    if (start) data.append("start_time", start);
    data.append("file", fileInput.files[0]);
    if (trackInput.files[0]) data.append("track", trackInput.files[0]);
    send(data);
  });

  cancel.addEventListener("click", () => { if (sending) sending.abort(); });

  function send(data) {
    statusBox.hidden = false;
    jobStep.hidden = true;
    casesBox.replaceChildren();
    sendBar.value = 0;
    sendText.textContent = "0%";
    say("");
    busy(true);
    setState("sending");
    const xhr = new XMLHttpRequest();
    sending = xhr;
    xhr.open("POST", "/api/uploads");
    xhr.setRequestHeader("X-CSRF-Token", gp.csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      sendBar.value = event.loaded / event.total;
      sendText.textContent = Math.floor((100 * event.loaded) / event.total) + "% · " +
        sizeText(event.loaded) + " / " + sizeText(event.total);
    });
    xhr.upload.addEventListener("load", () => { sendText.textContent = gp.t("upload.send.checking"); });
    xhr.addEventListener("load", () => {
      sending = null;
      busy(false);
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if ((xhr.status === 200 || xhr.status === 201) && body) {
        sendBar.value = 1;
        sendText.textContent = gp.t("upload.send.done");
        fileInput.value = "";
        trackInput.value = "";
        showChosen();
        follow(body);
        return;
      }
      const detail = body && body.detail ? body.detail : xhr.status + " " + xhr.statusText;
      sendText.textContent = "";
      say(gp.t("upload.refused", { detail }), "error");
      setState("refused");
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

  // --- the job ---

  function showJob(job) {
    jobStep.hidden = false;
    jobTitle.textContent = gp.t("upload.step.job", { id: job.id });
    jobBar.value = job.progress;
    const parts = [gp.t("upload.job." + job.status), Math.round(100 * job.progress) + "%"];
    if (job.incidents) parts.push(gp.t("upload.job.incidents", { count: job.incidents }));
    jobText.textContent = parts.join(" · ");
    statusBox.dataset.jobId = String(job.id);
    statusBox.dataset.jobStatus = job.status;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function follow(receipt) {
    setState("job");
    loadRecent();
    if (!receipt.created) say(gp.t("upload.again", { id: receipt.id }));
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
      say(gp.t("upload.job.error", { error: job.error || gp.t("common.unknown") }), "error");
      setState("failed");
      return;
    }
    if (job.warning) {
      // the GPS track placed few or none of the footage's frames: the job is done, but says so
      say(gp.t("upload.job.finished_warning", { count: job.incidents, warning: job.warning }), "warning");
    } else {
      say(gp.t("upload.job.finished", { count: job.incidents }), "ok");
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

  async function loadRecent() {
    const response = await gp.request("/api/uploads?limit=10");
    if (!response.ok) return;
    const listing = await response.json();
    const rows = listing.items.map((u) => gp.el("tr", { "data-upload": u.id }, [
      gp.el("td", {}, [
        (u.filename || u.sha256.slice(0, 12)) + (u.has_track ? " + " + gp.t("upload.recent.track") : ""),
        ...revisionBadge(u.revision),
      ]),
      gp.el("td", { text: u.camera_id || "–" }),
      gp.el("td", { text: when(u.created_at) }),
      gp.el("td", { text: u.job_status ? gp.t("upload.job." + u.job_status) : "–" }),
    ]));
    if (!rows.length) rows.push(gp.el("tr", {}, [gp.el("td", { colspan: 4, class: "muted", text: gp.t("upload.recent.none") })]));
    recent.tBodies[0].replaceChildren(...rows);
  }

  showChosen();
  loadRecent();
  setState("ready");
})();
