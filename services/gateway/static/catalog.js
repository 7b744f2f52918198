// Catalog page: index statistics, recent import jobs with live progress, and product browsing.
import { Status, api, el, productCard, showSimilar } from "/static/app.js";

const $ = (id) => document.getElementById(id);
const status = new Status($("status"));
const PAGE = 24;
let cursor = null;
let category = "";

function more(product) {
  $("similar").hidden = false;
  showSimilar(product, { heading: $("similar-heading"), list: $("similar-list"), status });
}

async function loadStats() {
  try {
    const s = await api("/v1/stats");
    const item = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
    $("stats").replaceChildren(
      ...item("Products", s.products.toLocaleString()),
      ...item("Vectors", s.vectors.toLocaleString()),
      ...item("Model", `${s.model_id} (${s.dim} dimensions)`),
    );
  } catch (err) {
    $("stats").replaceChildren(el("dt", {}, "Statistics"), el("dd", {}, err.message));
  }
}

function jobRow(job) {
  const finished = job.done + job.skipped + job.failed;
  const total = job.total || 0;
  const progress = el("progress", { max: String(Math.max(total, 1)), value: String(finished), "aria-label": `${finished} of ${total} items` });
  const eta = job.status === "running" && job.eta_s != null ? `, ${Math.ceil(job.eta_s)} s left` : "";
  const started = job.started_at_ms || job.created_at_ms;
  return el(
    "tr",
    {},
    el("td", {}, job.source || job.feed_url || job.job_id),
    el("td", { class: `job-${job.status}` }, job.status, job.message ? el("small", {}, ` ${job.message}`) : null),
    el("td", {}, progress, ` ${finished} / ${total}${job.expanded ? "" : "+"}${eta}`),
    el("td", {}, String(job.failed + job.invalid_rows)),
    el("td", {}, new Date(started).toLocaleString()),
  );
}

// Re-polled while any job is still moving.
async function loadImports() {
  const body = $("imports").tBodies[0];
  try {
    const { imports } = await api("/v1/imports");
    body.replaceChildren(...imports.map(jobRow));
    if (!imports.length) body.append(el("tr", {}, el("td", { colspan: "5" }, "No imports yet.")));
    if (imports.some((j) => j.status === "queued" || j.status === "running")) setTimeout(loadImports, 2000);
  } catch (err) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "5", role: "alert" }, err.message)));
  }
}

async function loadProducts(reset) {
  if (reset) {
    cursor = null;
    $("products").replaceChildren();
  }
  status.busy("Loading products…");
  $("more").disabled = true;
  try {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (category) query.set("category", category);
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/products?${query}`);
    $("products").append(...page.products.map((p) => productCard(p, more)));
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    const shown = $("products").children.length;
    status.info(shown ? `${shown} products shown${cursor ? "" : " (all)"}.` : "No products in this category.");
  } catch (err) {
    status.error(err);
  } finally {
    $("more").disabled = false;
  }
}

$("browse").addEventListener("submit", (e) => {
  e.preventDefault();
  category = String(new FormData(e.target).get("category") || "").trim();
  loadProducts(true);
});
$("more").addEventListener("click", () => loadProducts(false));
loadStats();
loadImports();
loadProducts(true);
