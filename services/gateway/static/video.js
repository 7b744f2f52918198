// Video page: play a demo clip or your own file, pause, Shop now -> the paused frame is captured in
// a canvas and searched; optionally pre-index the video for a shoppable timeline.
import { ShopView, Status, api, canvasToBlob, describeResult, el } from "/static/app.js";

const CLIPS = [
  ["bottle-detection", "Bottles"],
  ["fruit-and-vegetable-detection", "Fruit and vegetables"],
  ["one-by-one-person-detection", "People and clothing"],
  ["store-aisle-detection", "Store aisle"],
];
const $ = (id) => document.getElementById(id);
const video = $("video");
const status = new Status($("status"));
const view = new ShopView({ overlay: $("overlay"), results: $("results"), heading: $("results-heading"), list: $("matches"), status });
let source = null; // {url, file} of the loaded video
let videoId = null; // set once the server has registered (pre-indexed) this video
let polling = null;

for (const [name, title] of CLIPS) $("clip").append(el("option", { value: name }, title));

function load(url, file) {
  source = { url, file };
  videoId = null;
  clearInterval(polling);
  view.clear();
  $("timeline").hidden = true;
  $("progress").hidden = true;
  video.src = url;
  $("shop").disabled = false;
  $("preindex").disabled = false;
  status.info("Play the video, pause where you see something you like, then press Shop now.");
}

// The frame on screen, at the video's own resolution, as a JPEG.
async function captureFrame() {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return canvasToBlob(canvas);
}

async function shopNow() {
  if (!video.videoWidth) {
    status.error("The video is not ready yet: wait for it to load.");
    return;
  }
  video.pause();
  const t = video.currentTime;
  status.busy(`Looking for products at ${t.toFixed(1)} s…`);
  $("results").setAttribute("aria-busy", "true");
  try {
    const data = new FormData();
    data.append("image", await captureFrame(), `frame-${t.toFixed(2)}.jpg`);
    data.append("k", "8");
    const body = await api("/v1/search", { method: "POST", body: data });
    show(body, t);
  } catch (err) {
    view.clear();
    status.error(err);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

function show(body, t) {
  video.pause();
  view.show(body);
  status.info(`At ${t.toFixed(1)} s: ${describeResult(body)}`);
}

// Pre-indexing: POST /v1/videos, then poll its status for progress and timeline markers.
async function preindex() {
  status.busy("Registering the video for pre-indexing…");
  const data = new FormData();
  try {
    // A demo clip is uploaded too: the server may refuse to fetch from its own (private) address.
    const file = source.file || (await (await fetch(source.url)).blob());
    data.append("video", file, source.file ? source.file.name : source.url.split("/").pop());
    const accepted = await api("/v1/videos", { method: "POST", body: data });
    videoId = accepted.video_id;
    $("progress").hidden = false;
    status.busy("Pre-indexing: products will appear as markers on the timeline.");
    polling = setInterval(() => poll(accepted.status_url || `/v1/videos/${videoId}`), 1500);
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      status.error("Pre-indexing is not available on this server; Shop now still works on any paused frame.");
      $("preindex").disabled = true;
    } else {
      status.error(err);
    }
  }
}

async function poll(url) {
  try {
    const job = await api(url);
    $("progress").value = job.progress ?? 0;
    renderMarkers(job);
    if (job.status === "ready" || job.status === "completed" || job.status === "failed") {
      clearInterval(polling);
      if (job.status === "failed") status.error(`Pre-indexing failed: ${job.message || job.error || "unknown error"}`);
      else status.info(`Pre-indexed: ${job.markers?.length ?? 0} moments with products. Select a marker to shop it.`);
    }
  } catch (err) {
    clearInterval(polling);
    status.error(err);
  }
}

function renderMarkers(job) {
  const markers = job.markers || [];
  const duration = job.duration_s || video.duration;
  if (!markers.length || !duration) return;
  const timeline = $("timeline");
  timeline.hidden = false;
  timeline.replaceChildren(
    ...markers.map((m) =>
      el("button", {
        type: "button",
        class: "marker",
        style: `left:${Math.min(100, (100 * m.t) / duration)}%`,
        title: `${m.t.toFixed(1)} s: ${(m.labels || []).join(", ")}`,
        "aria-label": `Shop at ${m.t.toFixed(1)} seconds: ${(m.labels || []).join(", ") || "products"}`,
        onclick: () => shopCached(m.t),
      }),
    ),
  );
}

// A marker answers from the server's cache for that frame: no upload, instant.
async function shopCached(t) {
  status.busy(`Looking up ${t.toFixed(1)} s…`);
  try {
    const body = await api(`/v1/videos/${encodeURIComponent(videoId)}/shop?t=${t}`);
    video.currentTime = body.frame_time_s ?? t;
    video.addEventListener("seeked", () => show(body, video.currentTime), { once: true });
  } catch (err) {
    status.error(err);
  }
}

$("clip").addEventListener("change", (e) => {
  if (e.target.value) load(`/media/videos/clips/${e.target.value}.mp4`, null);
});
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) load(URL.createObjectURL(file), file);
});
$("shop").addEventListener("click", shopNow);
$("preindex").addEventListener("click", preindex);
video.addEventListener("play", () => view.clear()); // the boxes belong to the paused frame only
video.addEventListener("error", () => {
  status.error("This video cannot be played here (missing file or unsupported format).");
  $("shop").disabled = true;
});
