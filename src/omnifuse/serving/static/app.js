// The omnifuse web page: pick a task, give its inputs, render the result. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const MEDIA = ["image", "audio", "video"];
const state = { tasks: [], files: {} };
const keyInput = $("key");
keyInput.value = localStorage.getItem("omnifuse-key") || "";

function headers() {
  localStorage.setItem("omnifuse-key", keyInput.value);
  return keyInput.value ? { Authorization: "Bearer " + keyInput.value } : {};
}

async function loadTasks() {
  const res = await fetch("/v1/models", { headers: headers() });
  const body = await res.json();
  if (!res.ok) return showError(body);
  state.tasks = body.data;
  $("backend").textContent = "backend: " + body.backend;
  $("task").innerHTML = "";
  for (const t of state.tasks) {
    const opt = document.createElement("option");
    opt.value = t.name;
    opt.textContent = `${t.name} (${t.type})`;
    $("task").appendChild(opt);
  }
  onTask();
}

function current() { return state.tasks.find((t) => t.name === $("task").value); }

function media() { return current().inputs.filter((m) => MEDIA.includes(m)); }

function onTask() {
  const t = current();
  if (!t) return;
  const kinds = media();
  $("task-info").textContent = `reads ${t.inputs.join(", ")}; serves ${t.serves.join(", ")}`;
  $("drop").hidden = kinds.length === 0;
  $("drop-kinds").textContent = kinds.join(" / ");
  for (const label of document.querySelectorAll("[data-media]")) {
    label.hidden = !kinds.includes(label.dataset.media);
  }
  $("record").hidden = !(kinds.includes("audio") && navigator.mediaDevices && window.MediaRecorder);
  $("text-label").hidden = !t.inputs.includes("text");
  state.files = {};
  for (const kind of MEDIA) $("file-" + kind).value = "";
  showFiles();
}

// A dropped file goes to the modality its MIME type names, else to the first one still empty.
function kindOf(file) {
  const kinds = media();
  const kind = (file.type || "").split("/")[0];
  return kinds.includes(kind) ? kind : kinds.find((k) => !state.files[k]) || kinds[0];
}

function setFile(kind, file) {
  state.files[kind] = file;
  showFiles();
}

function showFiles() {
  const names = Object.entries(state.files).filter(([, f]) => f)
    .map(([k, f]) => `${k}: ${f.name || "recording.wav"} (${f.size} bytes)`);
  $("file-name").textContent = names.join("; ");
  const img = $("preview");
  img.hidden = !state.files.image;
  if (!img.hidden) img.src = URL.createObjectURL(state.files.image);
}

$("task").addEventListener("change", onTask);
for (const kind of MEDIA) {
  $("file-" + kind).addEventListener("change", (e) => setFile(kind, e.target.files[0] || null));
}
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  for (const file of e.dataTransfer.files) setFile(kindOf(file), file);
});

// Microphone: record, decode with Web Audio, send as 16-bit WAV (the server reads WAV/FLAC/OGG,
// not the browser's WebM/Opus).
$("record").addEventListener("click", async () => {
  const button = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    button.textContent = "Record from microphone";
    const buffer = await new Blob(chunks).arrayBuffer();
    const audio = await new AudioContext().decodeAudioData(buffer);
    setFile("audio", new File([wav(audio.getChannelData(0), audio.sampleRate)], "recording.wav",
      { type: "audio/wav" }));
  };
  state.recorder = recorder;
  recorder.start();
  button.textContent = "Stop recording";
});

function wav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const put = (o, s) => [...s].forEach((c, i) => view.setUint8(o + i, c.charCodeAt(0)));
  put(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); put(8, "WAVEfmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); put(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return view.buffer;
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const t = current();
  const data = new FormData();
  data.append("task", t.name);
  if (t.inputs.includes("text") && $("text").value) data.append("text", $("text").value);
  for (const [kind, file] of Object.entries(state.files)) {
    if (file) data.append(kind, file, file.name || "upload");
  }
  const video = t.serves.includes("generate_video");
  const url = video ? "/v1/generate-video?response_format=mp4" : "/v1/predict";
  $("result").innerHTML = "<p>running…</p>";
  $("submit").disabled = true;
  try {
    const res = await fetch(url, { method: "POST", body: data, headers: headers() });
    if (!res.ok) return showError(await res.json());
    if (video) return showVideo(await res.blob());
    show(await res.json());
  } catch (err) {
    showError({ error: { message: String(err) } });
  } finally {
    $("submit").disabled = false;
  }
});

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(body) {
  const out = $("result");
  out.innerHTML = "";
  out.appendChild(el("h2", "", `task: ${body.task}`));
  for (const p of body.predictions) out.appendChild(render(p));
  out.dataset.done = "1";
}

function render(p) {
  if (p.scores) return bars(p);
  const box = el("div", "prediction");
  if (p.text !== undefined) box.appendChild(el("p", "text-out", p.text));
  if (p.similarity !== undefined) box.appendChild(el("p", "", `similarity ${p.similarity.toFixed(3)}`));
  if (p.embeddings) {
    for (const [m, v] of Object.entries(p.embeddings)) {
      box.appendChild(el("p", "", `${m} embedding: ${v.length} dims [${v.slice(0, 4).map((x) => x.toFixed(3)).join(", ")}, …]`));
    }
  }
  if (p.reconstruction_mse !== undefined) {
    box.appendChild(el("p", "", `reconstruction MSE ${p.reconstruction_mse.toFixed(4)} on ${p.masked} masked patches`));
  }
  if (!box.childNodes.length) box.appendChild(el("pre", "", JSON.stringify(p, null, 2)));
  return box;
}

function bars(p) {
  const box = el("div", "bars");
  box.appendChild(el("p", "text-out", `${p.label} (${(100 * p.score).toFixed(1)} %)`));
  const rows = Object.entries(p.scores).sort((a, b) => b[1] - a[1]);
  for (const [name, score] of rows) {
    const row = el("div", "bar" + (String(name) === String(p.label) ? " top" : ""));
    row.appendChild(el("span", "name", name));
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(1, 100 * score)}%`;
    row.appendChild(el("div", "track")).appendChild(fill);
    row.appendChild(el("span", "pct", `${(100 * score).toFixed(1)} %`));
    box.appendChild(row);
  }
  return box;
}

function showVideo(blob) {
  const out = $("result");
  out.innerHTML = "";
  const v = el("video");
  Object.assign(v, { controls: true, autoplay: true, loop: true, muted: true });
  v.src = URL.createObjectURL(blob);
  out.appendChild(v);
  out.dataset.done = "1";
}

function showError(body) {
  const e = body.error || { message: JSON.stringify(body) };
  const out = $("result");
  out.innerHTML = "";
  out.appendChild(el("p", "error", `${e.type || "error"}: ${e.message}`));
  out.dataset.done = "1";
}

loadTasks();
