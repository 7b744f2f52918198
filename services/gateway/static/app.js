// Shared by the three pages: API calls with readable errors, status lines, result cards, and the
// box overlay drawn over a photo or a paused video frame.

export const MAX_SIDE = 1600; // longest side sent to the API; a phone photo needs no more to be found
export const JPEG_QUALITY = 0.9;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The API's error body is {"detail", "code"}; detail is a list for field validation errors.
function detailText(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  return String(detail ?? "");
}

// With API keys on (VS_GATEWAY_AUTH_ENABLED) the API answers 401 until a key is sent: the page asks
// for one once and keeps it in this browser. With keys off nothing is stored and nothing is asked.
const KEY_ITEM = "visualsearch.apiKey";

function storedKey() {
  try {
    return localStorage.getItem(KEY_ITEM) || "";
  } catch {
    return ""; // storage disabled: the key is asked again on the next 401
  }
}

function askForKey(reason) {
  const key = (window.prompt(`${reason}\n\nPaste your API key (vs_...); this browser keeps it.`) || "").trim();
  if (key) localStorage.setItem(KEY_ITEM, key);
  return key;
}

async function send(path, options, key) {
  const headers = new Headers(options.headers || {});
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "network", `The server could not be reached (${err.message}).`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const detail = body && body.detail !== undefined ? detailText(body.detail) : text || response.statusText;
  return { response, body, detail };
}

export async function api(path, options = {}) {
  const key = storedKey();
  let { response, body, detail } = await send(path, options, key);
  if (response.status === 401) {
    // Another call may have been given a key meanwhile; otherwise ask (once per refusal).
    const newKey = storedKey() !== key ? storedKey() : askForKey(detail);
    if (newKey) ({ response, body, detail } = await send(path, options, newKey));
  }
  if (!response.ok) {
    throw new ApiError(response.status, body?.code || "http_error", `${detail} (HTTP ${response.status})`);
  }
  return body;
}

// A polite live region for progress, and an alert region for errors.
export class Status {
  constructor(element) {
    this.element = element;
  }
  busy(message) {
    this.set(message, "busy");
  }
  info(message) {
    this.set(message, "info");
  }
  error(err) {
    this.set(err instanceof Error ? err.message : String(err), "error");
  }
  clear() {
    this.set("", "info");
  }
  set(message, kind) {
    this.element.textContent = message;
    this.element.dataset.kind = kind;
    this.element.setAttribute("role", kind === "error" ? "alert" : "status");
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function formatPrice(price, currency) {
  if (price === null || price === undefined) return "price not listed";
  if (currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(price);
    } catch {
      return `${price.toFixed(2)} ${currency}`;
    }
  }
  return price.toFixed(2);
}

// One card per catalog product; onMore(product) runs "More like this".
export function productCard(product, onMore) {
  const similarity =
    product.similarity === undefined
      ? null
      : el("span", { class: "similarity" }, `${Math.round(product.similarity * 100)}% similar`);
  const title = product.url
    ? el("a", { href: product.url, target: "_blank", rel: "noopener", class: "title" }, product.title)
    : el("span", { class: "title" }, product.title || product.product_id);
  const image = product.image_url
    ? el("img", { src: product.image_url, alt: product.title || "product photo", loading: "lazy" })
    : el("div", { class: "noimage", "aria-hidden": "true" }, "no image");
  return el(
    "li",
    { class: "card", "data-product-id": product.product_id },
    image,
    el(
      "div",
      { class: "card-body" },
      title,
      el("span", { class: product.price == null ? "price unknown" : "price" }, formatPrice(product.price, product.currency)),
      el("span", { class: "meta" }, [product.brand, product.category].filter(Boolean).join(" · ")),
      similarity,
      el(
        "div",
        { class: "card-actions" },
        product.url
          ? el("a", { href: product.url, target: "_blank", rel: "noopener", class: "button" }, "View product")
          : null,
        onMore ? el("button", { type: "button", onclick: () => onMore(product) }, "More like this") : null,
      ),
    ),
  );
}

export function renderProducts(list, products, onMore) {
  list.replaceChildren(...products.map((p) => productCard(p, onMore)));
  if (!products.length) list.append(el("li", { class: "empty" }, "No matching products."));
}

// "More like this": GET /v1/products/{id}/similar, shown in `list` under `heading`.
export async function showSimilar(product, { heading, list, status }) {
  status.busy(`Finding products like "${product.title}"…`);
  try {
    const body = await api(`/v1/products/${encodeURIComponent(product.product_id)}/similar?k=12`);
    heading.textContent = `More like "${product.title}"`;
    renderProducts(list, body.matches, (p) => showSimilar(p, { heading, list, status }));
    status.info(`${body.matches.length} similar products.`);
    heading.scrollIntoView({ block: "nearest" });
  } catch (err) {
    status.error(err);
  }
}

// Boxes as buttons positioned in percent of the image: they follow any displayed size.
export function drawBoxes(overlay, objects, size, onSelect) {
  overlay.replaceChildren();
  // Largest first: a smaller box (a tie on a person) comes later in the DOM, on top, so it stays clickable.
  const area = ({ box: [x1, y1, x2, y2] }) => (x2 - x1) * (y2 - y1);
  const order = objects.map((obj, index) => ({ obj, index })).sort((a, b) => area(b.obj) - area(a.obj));
  order.forEach(({ obj, index }) => {
    if (isWholeImage(obj)) {
      overlay.append(wholeImageChip(index, onSelect));
      return;
    }
    const [x1, y1, x2, y2] = obj.box;
    const label = `${obj.label} ${Math.round(obj.confidence * 100)}%`;
    const button = el(
      "button",
      {
        type: "button",
        class: "box",
        "data-index": String(index),
        "aria-label": `Show matches for ${label}`,
        "aria-pressed": "false",
        style:
          `left:${(100 * x1) / size.width}%;top:${(100 * y1) / size.height}%;` +
          `width:${(100 * (x2 - x1)) / size.width}%;height:${(100 * (y2 - y1)) / size.height}%`,
        onclick: () => onSelect(index),
      },
      el("span", { class: "box-label" }, label),
    );
    overlay.append(button);
  });
}

// The whole photo is an answer of its own (the first one); a corner chip selects it without
// covering the picture, so the boxes under it stay clickable and a box of one's own can be drawn.
const isWholeImage = (obj) => obj.label === "image";

function wholeImageChip(index, onSelect) {
  return el(
    "button",
    {
      type: "button",
      class: "box whole",
      "data-index": String(index),
      "aria-label": "Show matches for the whole photo",
      "aria-pressed": "false",
      onclick: () => onSelect(index),
    },
    el("span", { class: "box-label" }, "whole photo"),
  );
}

const objectName = (obj) =>
  isWholeImage(obj) ? "the whole photo" : `${obj.label} (${Math.round(obj.confidence * 100)}%)`;

export function markSelected(overlay, index) {
  for (const box of overlay.querySelectorAll(".box")) {
    box.setAttribute("aria-pressed", String(Number(box.dataset.index) === index));
  }
}

// Category (comma-separated), min and max price from a filter form, as /v1/search form fields.
export function appendFilters(form, data) {
  const fields = new FormData(form);
  for (const category of String(fields.get("category") || "").split(",")) {
    if (category.trim()) data.append("category", category.trim());
  }
  for (const name of ["min_price", "max_price"]) {
    const value = String(fields.get(name) || "").trim();
    if (value) data.append(name, value);
  }
}

export function canvasToBlob(canvas) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode the image"))), "image/jpeg", JPEG_QUALITY);
  });
}

// Boxes over an image and the matches of the selected box: the heart of the photo and video pages.
export class ShopView {
  constructor({ overlay, results, heading, list, status }) {
    Object.assign(this, { overlay, results, heading, list, status });
    this.objects = [];
    this.size = null;
  }

  show(body, selected = 0) {
    this.objects = body.objects;
    this.size = body.image;
    drawBoxes(this.overlay, this.objects, this.size, (i) => this.select(i));
    this.results.hidden = false;
    if (this.objects.length) this.select(selected);
  }

  select(index) {
    const obj = this.objects[index];
    markSelected(this.overlay, index);
    this.heading.textContent = `Matches for ${objectName(obj)}`;
    const more = (p) => showSimilar(p, { heading: this.heading, list: this.list, status: this.status });
    renderProducts(this.list, obj.matches, more);
  }

  clear() {
    this.objects = [];
    this.overlay.replaceChildren();
    this.results.hidden = true;
  }
}

export function describeResult(body) {
  const n = body.objects.filter((obj) => !isWholeImage(obj)).length;
  const ms = Math.round(body.timings_ms?.total ?? 0);
  if (n === 0) return `Nothing detected: searched the whole image (${ms} ms).`;
  return `${n} object${n === 1 ? "" : "s"} found in ${ms} ms. Select a box to see its matches.`;
}
