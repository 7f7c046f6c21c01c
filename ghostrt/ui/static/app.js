// ghostrt ui page: plain JS over the /api routes. Live latency is measured, not estimated: each camera frame
// is drawn into a canvas with its frame number as 12 black/white blocks (top left), sent over WebRTC, and read
// back from the swapped frame when it is displayed; capture->display = display time - that frame's capture time.
"use strict";
const $ = (id) => document.getElementById(id);
const G = (window.ghostrt = { sources: { img: [], vid: [], live: [] }, live: {} });

function showMessage(text) { const m = $("message"); m.textContent = text; m.hidden = !text; }
async function api(url, opts) {
  let res, body;
  try { res = await fetch(url, opts); } catch (e) { showMessage("server not reachable: " + e); throw e; }
  try { body = await res.json(); } catch (e) { body = { error: `HTTP ${res.status}` }; }
  if (!res.ok || body.error) { showMessage(body.error || `HTTP ${res.status}`); throw new Error(body.error); }
  return body;
}
function form(obj) { const f = new FormData(); for (const [k, v] of Object.entries(obj)) f.append(k, v); return f; }

document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll(".tab, .panel").forEach((e) => e.classList.remove("active"));
  b.classList.add("active"); $(b.dataset.tab).classList.add("active");
  if (b.dataset.tab === "status") loadStatus();
}));

async function uploadSources(tab, input, list, onChange) {
  G.sources[tab] = []; list.innerHTML = ""; showMessage("");
  for (const file of input.files) {
    try {
      const r = await api("/api/source", { method: "POST", body: form({ file }) });
      G.sources[tab].push(r.id);
      const img = document.createElement("img"); img.src = r.thumb; img.title = r.name; list.appendChild(img);
    } catch (e) { /* message shown */ }
  }
  onChange();
}

function gallery(el, faces, tab) {
  el.innerHTML = "";
  faces.forEach((f) => {
    const d = document.createElement("div"); d.className = "face";
    const n = G.sources[tab].length;
    const opts = ['<option value="">keep</option>'].concat([...Array(Math.max(n, 1)).keys()].map(
      (k) => `<option value="${k}" ${f.index === 0 && k === 0 ? "selected" : ""}>source ${k + 1}</option>`));
    d.innerHTML = `<img src="${f.thumb}"><div>face ${f.index + 1}</div><select data-face="${f.index}">${opts.join("")}</select>`;
    el.appendChild(d);
  });
}
function assignment(el) {
  return [...el.querySelectorAll("select")].filter((s) => s.value !== "").map((s) => `${s.dataset.face}:${s.value}`).join(",");
}

// ------------------------------------------------------------------------------------------------- image
const imgReady = () => { $("img-run").disabled = !(G.sources.img.length && G.imgTarget); };
$("img-sources").addEventListener("change", () => uploadSources("img", $("img-sources"), $("img-source-list"), () => {
  imgReady(); if (G.imgFaces) gallery($("img-gallery"), G.imgFaces, "img"); }));
$("img-target").addEventListener("change", async () => {
  G.imgTarget = null; imgReady(); showMessage("");
  try {
    const r = await api("/api/target", { method: "POST", body: form({ file: $("img-target").files[0] }) });
    G.imgTarget = r.id; G.imgFaces = r.faces; gallery($("img-gallery"), r.faces, "img");
    $("img-info").textContent = `${r.name}: ${r.width}×${r.height}, ${r.faces.length} face(s) detected`;
  } catch (e) { $("img-gallery").innerHTML = ""; }
  imgReady();
});
$("img-run").addEventListener("click", async () => {
  $("img-run").disabled = true; showMessage("");
  try {
    const r = await api("/api/swap/image", { method: "POST", body: form({ target: G.imgTarget,
      sources: G.sources.img.join(","), mode: $("img-mode").value, assign: assignment($("img-gallery")) }) });
    $("img-result").src = r.result; $("img-sheet").src = r.sheet;
    for (const [id, url] of [["img-download", r.result], ["img-sheet-link", r.sheet]]) { $(id).href = url; $(id).hidden = false; }
    $("img-info").textContent = `swapped ${r.swapped} of ${r.faces} face(s)` + (r.warnings.length ? " — " + r.warnings.join("; ") : "");
    G.imageDone = r;
  } catch (e) { /* shown */ }
  imgReady();
});

// ------------------------------------------------------------------------------------------------- video
const vidReady = () => { $("vid-run").disabled = !(G.sources.vid.length && G.vidTarget) || !!G.job;
  $("vid-preview").disabled = $("vid-run").disabled || G.vidFirstFace == null; };
$("vid-sources").addEventListener("change", () => uploadSources("vid", $("vid-sources"), $("vid-source-list"), vidReady));
$("vid-target").addEventListener("change", async () => {
  G.vidTarget = null; G.vidFirstFace = null; $("vid-preview-box").hidden = true; vidReady(); showMessage("");
  $("vid-info").textContent = "uploading…";
  try {
    const r = await api("/api/video", { method: "POST", body: form({ file: $("vid-target").files[0] }) });
    G.vidTarget = r.id; G.vidFirstFace = r.first_face_frame; gallery($("vid-gallery"), r.faces, "vid");
    $("vid-info").textContent = `${r.name}: ${r.frames} frames at ${r.fps.toFixed(2)} fps; ` +
      (r.first_face_frame === null ? "no face in the first frames" : `first face in frame ${r.first_face_frame}`);
  } catch (e) { $("vid-info").textContent = ""; }
  vidReady();
});
const vidChoice = () => ({ video: G.vidTarget, sources: G.sources.vid.join(","), mode: $("vid-mode").value,
  assign: assignment($("vid-gallery")) });
// the first frame with a face, swapped with the gallery's choice, before committing to the whole render
$("vid-preview").addEventListener("click", async () => {
  showMessage(""); $("vid-preview").disabled = true;
  try {
    const r = await api("/api/video/preview", { method: "POST", body: form(vidChoice()) });
    await new Promise((ok) => { $("vid-preview-img").onload = ok; $("vid-preview-img").onerror = ok; $("vid-preview-img").src = r.preview; });
    $("vid-preview-note").textContent = `Preview of frame ${r.frame}: swapped ${r.swapped} of ${r.faces} face(s)` +
      (r.standin ? " — STAND-IN (untrained) weights: not a real face swap" : "");
    $("vid-preview-box").hidden = false; G.preview = r;
  } catch (e) { /* shown */ }
  vidReady();
});
$("vid-run").addEventListener("click", async () => {
  showMessage(""); $("vid-download").hidden = true;
  try {
    const r = await api("/api/video/render", { method: "POST", body: form(vidChoice()) });
    G.job = r.id; $("vid-cancel").disabled = false; vidReady(); pollJob();
  } catch (e) { /* shown */ }
});
$("vid-cancel").addEventListener("click", () => G.job && api(`/api/video/job/${G.job}/cancel`, { method: "POST" }));
async function pollJob() {
  const p = await api(`/api/video/job/${G.job}`);
  $("vid-progress").max = p.total; $("vid-progress").value = p.frames;
  $("vid-info").textContent = `${p.status}: ${p.frames}/${p.total} frames, ${p.fps} fps` +
    (p.eta_s !== null && p.status === "running" ? `, ETA ${p.eta_s} s` : "") + (p.error ? ` — ${p.error}` : "");
  if (p.status === "running") return setTimeout(pollJob, 300);
  if (p.error) showMessage(p.error);
  if (p.download) { $("vid-download").href = p.download; $("vid-download").hidden = false; }
  G.jobDone = p; G.job = null; $("vid-cancel").disabled = true; vidReady();
}

// -------------------------------------------------------------------------------------------------- live
const BITS = 12, CELL = 8;
$("live-sources").addEventListener("change", () => uploadSources("live", $("live-sources"), $("live-source-list"),
  () => { $("live-start").disabled = !G.sources.live.length; }));
// cells are 1/32 of the frame width, so the code survives the encoder scaling the frame down
function stamp(ctx, n) {
  const c = ctx.canvas.width / 32;
  for (let b = 0; b < BITS; b++) { ctx.fillStyle = (n >> b) & 1 ? "#fff" : "#000"; ctx.fillRect(b * c, 0, Math.ceil(c), Math.ceil(c)); }
}
function readStamp(ctx) {
  const px = ctx.getImageData(0, 0, BITS * CELL, CELL).data; let n = 0;
  for (let b = 0; b < BITS; b++) { const i = ((CELL >> 1) * BITS * CELL + b * CELL + (CELL >> 1)) * 4; if (px[i] > 128) n |= 1 << b; }
  return n;
}
$("live-start").addEventListener("click", async () => {
  $("live-start").disabled = true; showMessage("");
  const L = (G.live = { sent: new Map(), lat: [], shown: [], n: 0 });
  try {
    L.cam = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    const camVideo = document.createElement("video"); camVideo.muted = true; camVideo.srcObject = L.cam; await camVideo.play();
    const canvas = document.createElement("canvas"); canvas.width = camVideo.videoWidth; canvas.height = camVideo.videoHeight;
    const ctx = canvas.getContext("2d"); const out = canvas.captureStream(0); const track = out.getVideoTracks()[0];
    const pump = () => { if (L.stopped) return;
      ctx.drawImage(camVideo, 0, 0); L.n = (L.n + 1) % (1 << BITS); stamp(ctx, L.n); L.sent.set(L.n, performance.now());
      track.requestFrame(); camVideo.requestVideoFrameCallback(pump); };
    camVideo.requestVideoFrameCallback(pump);
    const pc = (L.pc = new RTCPeerConnection());
    pc.addTransceiver(track, { direction: "sendrecv" });
    pc.ontrack = (ev) => { $("live-video").srcObject = new MediaStream([ev.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => { if (pc.iceGatheringState === "complete") ok();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok()); });
    const ans = await api("/api/live/offer", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, sources: G.sources.live }) });
    L.sid = ans.sid; await pc.setRemoteDescription({ sdp: ans.sdp, type: ans.type });
    const view = $("live-video"), rc = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
    const onShown = (now) => { if (L.stopped) return;
      rc.canvas.width = BITS * CELL; rc.canvas.height = CELL; const c = view.videoWidth / 32;
      rc.drawImage(view, 0, 0, BITS * c, c, 0, 0, BITS * CELL, CELL);
      const sentAt = L.sent.get(readStamp(rc));
      if (sentAt !== undefined && now - sentAt < 10000) { L.lat.push(now - sentAt); if (L.lat.length > 300) L.lat.shift(); }
      L.shown.push(now); while (L.shown.length && now - L.shown[0] > 2000) L.shown.shift();
      view.requestVideoFrameCallback(onShown); };
    view.requestVideoFrameCallback(onShown);
    $("live-stop").disabled = false; L.timer = setInterval(liveStats, 1000);
  } catch (e) { if (!$("message").textContent) showMessage("live: " + e); $("live-start").disabled = false; }
});
function pct(a, p) { if (!a.length) return null; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; }
async function liveStats() {
  const L = G.live; if (!L.sid) return;
  const s = await api(`/api/live/${L.sid}/stats`).catch(() => ({}));
  const span = L.shown.length > 1 ? (L.shown[L.shown.length - 1] - L.shown[0]) / 1000 : 0;
  L.fps = span > 0 ? (L.shown.length - 1) / span : 0; L.p50 = pct(L.lat, 0.5); L.p99 = pct(L.lat, 0.99); L.server = s;
  const f = (v) => (v === null || v === undefined ? "–" : v.toFixed(0));
  $("live-stats").textContent = `displayed ${L.fps.toFixed(1)} fps\ncapture→display p50 ${f(L.p50)} ms, p99 ${f(L.p99)} ms\n` +
    `server: ${s.fps ?? "–"} fps, swap latency p50 ${s.p50_ms ?? "–"} ms p99 ${s.p99_ms ?? "–"} ms, dropped ${s.dropped ?? 0}, faces swapped ${s.faces_swapped ?? "–"}\n` +
    `streams on the server: ${s.streams ?? "–"}`;
}
$("live-stop").addEventListener("click", async () => {
  const L = G.live; L.stopped = true; clearInterval(L.timer);
  if (L.pc) L.pc.close(); if (L.cam) L.cam.getTracks().forEach((t) => t.stop());
  if (L.sid) await api(`/api/live/${L.sid}/close`, { method: "POST" }).catch(() => {});
  $("live-stop").disabled = true; $("live-start").disabled = false; $("live-stats").textContent = "stopped";
});

// ------------------------------------------------------------------------------------------------ status
async function loadStatus() {
  const s = await api("/api/status");
  const rows = Object.entries(s.nets || {}).map(([net, d]) =>
    `<tr><td>${net}</td><td>${d.backend ?? ""}</td><td>${d.precision ?? ""}</td><td>${d.max_batch ?? ""}</td><td>${d.reason ?? ""}</td></tr>`);
  $("status-table").querySelector("tbody").innerHTML = rows.join("");
  $("standin").hidden = !s.standin_warning;
  $("standin").textContent = s.standin_warning ? `${s.standin_warning} (${s.standin_models.join(", ")})` : "";
  $("status-live").textContent = s.live ? JSON.stringify(s.live, null, 1) : "";
  G.status = s;
}
loadStatus();
