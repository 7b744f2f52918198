// Photo search page: pick / drop / paste / camera -> downsize -> POST /v1/search -> boxes + matches.
import { MAX_SIDE, ShopView, Status, api, appendFilters, canvasToBlob, describeResult } from "/static/app.js";

const $ = (id) => document.getElementById(id);
const status = new Status($("status"));
const view = new ShopView({
  overlay: $("overlay"),
  results: $("results"),
  heading: $("results-heading"),
  list: $("matches"),
  status,
});
let current = null; // {blob, width, height} of the image last sent
let detected = []; // the detector's objects, kept when the shopper adds boxes of their own
// Read by the browser tests: what was actually uploaded.
window.visualsearch = { lastUpload: null };

// Big photos are re-encoded at most MAX_SIDE px on their longest side: a 12 MP phone photo drops
// from megabytes to a few hundred KB, and the detector works at 640 px anyway.
async function prepare(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return { blob: file, width: null, height: null }; // not decodable here: let the API judge it
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size < 4_000_000) {
    return { blob: file, width: bitmap.width, height: bitmap.height };
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return { blob: await canvasToBlob(canvas), width: canvas.width, height: canvas.height };
}

async function search(extra = {}) {
  const data = new FormData();
  data.append("image", current.blob, current.blob.name || "photo.jpg");
  data.append("k", "8");
  appendFilters($("filters"), data);
  for (const [key, value] of Object.entries(extra)) data.append(key, value);
  return api("/v1/search", { method: "POST", body: data });
}

async function run(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    status.error(`"${file.name}" is not an image (${file.type}).`);
    return;
  }
  status.busy("Preparing the photo…");
  current = await prepare(file);
  window.visualsearch.lastUpload = {
    originalBytes: file.size,
    bytes: current.blob.size,
    width: current.width,
    height: current.height,
  };
  const photo = $("photo");
  if (photo.src) URL.revokeObjectURL(photo.src);
  photo.src = URL.createObjectURL(current.blob);
  $("stage").hidden = false;
  view.clear();
  await detect();
}

async function detect() {
  if (!current) {
    status.error("Choose a photo first.");
    return;
  }
  status.busy("Searching…");
  $("results").setAttribute("aria-busy", "true");
  try {
    const body = await search();
    detected = body.objects;
    view.show(body);
    status.info(describeResult(body));
  } catch (err) {
    view.clear();
    status.error(err);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

// Drag on the photo to search a region of your own (detect off, box in uploaded-image pixels).
function enableDrawing(overlay) {
  let start = null;
  let band = null;
  const point = (e) => {
    const r = overlay.getBoundingClientRect();
    return { x: Math.min(Math.max(e.clientX - r.left, 0), r.width), y: Math.min(Math.max(e.clientY - r.top, 0), r.height), r };
  };
  overlay.addEventListener("pointerdown", (e) => {
    if (e.target !== overlay || !view.size) return;
    start = point(e);
    band = document.createElement("div");
    band.className = "band";
    overlay.append(band);
    overlay.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  overlay.addEventListener("pointermove", (e) => {
    if (!start) return;
    const p = point(e);
    Object.assign(band.style, {
      left: `${Math.min(start.x, p.x)}px`,
      top: `${Math.min(start.y, p.y)}px`,
      width: `${Math.abs(p.x - start.x)}px`,
      height: `${Math.abs(p.y - start.y)}px`,
    });
  });
  overlay.addEventListener("pointerup", async (e) => {
    if (!start) return;
    const p = point(e);
    const from = start;
    start = null;
    band.remove();
    if (Math.abs(p.x - from.x) < 8 || Math.abs(p.y - from.y) < 8) return; // a click, not a box
    const sx = view.size.width / p.r.width;
    const sy = view.size.height / p.r.height;
    const box = [Math.min(from.x, p.x) * sx, Math.min(from.y, p.y) * sy, Math.max(from.x, p.x) * sx, Math.max(from.y, p.y) * sy];
    await searchBox(box.map((v) => Math.round(v)));
  });
}

async function searchBox(box) {
  status.busy("Searching your box…");
  try {
    const body = await search({ box: box.join(","), detect: "false" });
    const mine = body.objects.map((o) => ({ ...o, box, label: "your box", confidence: 1 }));
    view.show({ ...body, objects: [...detected, ...mine] }, detected.length);
    status.info("Showing the matches for your box.");
  } catch (err) {
    status.error(err);
  }
}

async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    status.error("The camera is not available here (it needs HTTPS or localhost, and a camera). Choose a photo instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (err) {
    status.error(`The camera could not be opened: ${err.message}`);
    return;
  }
  const dialog = $("camera-dialog");
  const video = $("camera-video");
  video.srcObject = stream;
  const close = () => {
    stream.getTracks().forEach((t) => t.stop());
    dialog.close();
  };
  $("camera-cancel").onclick = close;
  dialog.onclose = () => stream.getTracks().forEach((t) => t.stop());
  $("camera-shoot").onclick = async () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    close();
    const blob = await canvasToBlob(canvas);
    await run(new File([blob], "camera.jpg", { type: "image/jpeg" }));
  };
  dialog.showModal();
}

$("file").addEventListener("change", (e) => run(e.target.files[0]));
$("camera").addEventListener("click", openCamera);
$("filters").addEventListener("submit", (e) => {
  e.preventDefault();
  detect();
});
const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("dragging");
  });
}
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("dragging");
  run(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) run(item.getAsFile());
});
enableDrawing($("overlay"));
