// Atelier kiosk page: plain JS, no build step, no network beyond this kiosk's own server.
//
// Screens live on a stack (grid, detail, mix, message) mirrored in the browser history, so Back (the page's
// button or the browser's) returns to where the shopper came from. The grid's size and count come from the
// screen it is on (gridLayout). Other scripts hook in through renderGrid / openDesign and the events
// "atelier:attract" / "atelier:wake" on document (static/inspire.js does).
"use strict";

const state = {
  info: null,
  classId: null, // null: every class (conditional models only)
  designs: [], // the designs in the grid
  current: null, // the design shown large
  mixFirst: null, // first pick of a mix, while choosing the second
  stack: [], // screens, the last one shown; history.state.depth is its length
  layout: null, // the grid's {cols, rows, n, tile}
  lastInput: performance.now(),
  attract: null, // running attract-mode player, or null
  loading: 0,
};

// Counters the browser tests read (and handy in devtools); other scripts may have added theirs already.
window.atelier = Object.assign(window.atelier || {},
                               { attractFrames: 0, attractStarts: 0, gridLoads: 0, errors: 0, lastError: null });

const $ = (id) => document.getElementById(id);
const MIN_TILE_PX = 120; // a design smaller than this is hard to see, and a touch target too small to aim at
const ENLARGE_MAX = 4; // grid tiles show a design at most 4x its size: beyond that it only looks blurred
const DETAIL_ENLARGE_MAX = 6; // the one design looked at closely may be larger

function toast(message, ms = 4000) {
  const el = $("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, ms);
}

class ApiFailure extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status; // 0: the kiosk did not answer
    this.detail = detail; // developer words: for the console, never for the screen
  }
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    window.atelier.errors += 1;
    throw new ApiFailure(0, String(err));
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    window.atelier.errors += 1;
    window.atelier.lastError = data.error || `HTTP ${response.status}`;
    console.warn(`${path}: ${response.status} ${window.atelier.lastError}`);
    throw new ApiFailure(response.status, data.error || `request failed (${response.status})`);
  }
  return data;
}

// What a shopper reads when something fails: plain words, never the API's developer text.
function shopperWords(err) {
  if (err.status === 0) return "The designer is not answering. Please try again in a moment.";
  if (err.status === 503) return "The designer is busy. Please try again in a moment.";
  if (err.status === 409) return "The designer has just been updated. Here are new designs.";
  return "Something went wrong there. Please try again.";
}

function withClass(body) {
  if (state.info.conditional && state.classId !== null) body.class = state.classId;
  return body;
}

// What the page designs: the class chips say it for a conditional model, the title for the others.
function whatTitle(prefix = "New") {
  const info = state.info;
  if (info.conditional && state.classId !== null) return `${prefix} ${info.class_names[state.classId]} designs`;
  if (!info.conditional && info.trained_on && info.trained_on.length === 1) {
    return `${prefix} ${info.trained_on[0]} designs`;
  }
  return `${prefix} designs`;
}

// Screens ------------------------------------------------------------------------------------------------

const VIEWS = ["view-grid", "view-detail", "view-mix", "view-message"];

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  layout();
}

function urlOf(screen) {
  return screen.view === "detail" ? screen.design.page : "/";
}

// Show a screen: pushed on the stack (and the history), or replacing the one on top.
function go(screen, { replace = false, render = true } = {}) {
  const first = state.stack.length === 0; // the bottom screen takes the page's own history entry
  if (replace && !first) state.stack[state.stack.length - 1] = screen;
  else state.stack.push(screen);
  const entry = { depth: state.stack.length };
  if (replace || first) history.replaceState(entry, "", urlOf(screen));
  else history.pushState(entry, "", urlOf(screen));
  if (render) renderScreen(screen);
}

function topScreen() {
  return state.stack[state.stack.length - 1];
}

function back() {
  if (state.stack.length > 1) history.back(); // popstate renders the screen below
  else goHome();
}

function onPopState(event) {
  const depth = (event.state && event.state.depth) || 1;
  if (depth > state.stack.length) return; // "forward" past what this page remembers: stay
  state.stack.length = Math.max(1, depth);
  renderScreen(topScreen());
}

function renderScreen(screen) {
  state.mixFirst = screen.picking || null;
  setBanner(state.mixFirst);
  if (screen.view === "grid") {
    fillGrid(screen.designs, screen.title);
    show("view-grid");
  } else if (screen.view === "detail") {
    showDesign(screen.design);
  } else if (screen.view === "mix") {
    showMix(screen);
  } else if (screen.view === "message") {
    $("message-title").textContent = screen.title;
    $("message-text").textContent = screen.text;
    show("view-message");
    $("btn-message-ok").focus();
  }
}

function setBanner(first) {
  $("banner").hidden = !first;
  if (!first) return;
  $("banner-pick").src = first.url;
  $("banner-text").textContent = "Mix this design: now tap a second one";
}

// The grid -----------------------------------------------------------------------------------------------

// Columns, rows and tile size for the space the grid has: every cell filled (no holes), tiles as large as
// the screen allows up to ENLARGE_MAX x the design's size, the count near the configured grid size. With
// `count` given (designs already chosen), the largest tiles that show all of them.
function gridLayout(width, height, gap, count = 0) {
  const info = state.info;
  const maxTile = Math.max(MIN_TILE_PX * 2, info.size_px * ENLARGE_MAX);
  const target = info.ui.grid_size;
  let best = null;
  for (let cols = 1; cols <= 12; cols += 1) {
    for (let rows = 1; rows <= 12; rows += 1) {
      const n = cols * rows;
      if (count && (n < count || n - count >= cols)) continue; // all of them, no empty row
      if (n > info.ui.max_designs) continue;
      const fit = Math.floor(Math.min((width - gap * (cols - 1)) / cols, (height - gap * (rows - 1)) / rows));
      if (fit < MIN_TILE_PX && n > 1 && !count) continue;
      const tile = Math.max(1, Math.min(fit, maxTile));
      const cover = (n * tile * tile) / (width * height); // how much of the screen shows designs
      const score = count ? fit : cover - 0.15 * Math.abs(Math.log2(n / target));
      if (!best || score > best.score) best = { cols, rows, n, tile, score };
    }
  }
  return best || { cols: 1, rows: 1, n: 1, tile: Math.max(1, Math.floor(Math.min(width, height))) };
}

function measureGrid(count = 0) {
  // Measure the grid's space even while another screen is shown (no paint happens in between).
  const hidden = VIEWS.map((id) => $(id).hidden);
  VIEWS.forEach((id) => { $(id).hidden = id !== "view-grid"; });
  const box = $("grid-area").getBoundingClientRect();
  VIEWS.forEach((id, i) => { $(id).hidden = hidden[i]; });
  const gap = parseFloat(getComputedStyle($("grid")).columnGap) || 12;
  return gridLayout(Math.max(1, box.width), Math.max(1, box.height), gap, count);
}

function gridCount() {
  state.layout = measureGrid();
  return state.layout.n;
}

function applyGridLayout() {
  const grid = $("grid");
  const { cols, tile } = measureGrid(state.designs.length); // the designs shown decide the count
  grid.style.gridTemplateColumns = `repeat(${cols}, ${tile}px)`;
  grid.style.gridAutoRows = `${tile}px`;
  grid.style.setProperty("--tile", `${tile}px`);
}

function tile(design, onTap) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.setAttribute("role", "listitem");
  const img = document.createElement("img");
  img.decoding = "async";
  img.draggable = false;
  button.append(img);
  const tag = document.createElement("span");
  tag.className = "tag";
  button.append(tag);
  setTile(button, design);
  button.addEventListener("click", () => onTap(button.design, button));
  return button;
}

function setTile(button, design) {
  button.design = design;
  button.dataset.id = design.id;
  const img = button.querySelector("img");
  img.alt = design.class ? `${design.class} design` : "design";
  img.src = design.url;
  const tag = button.querySelector(".tag");
  tag.textContent = design.class || "";
  tag.hidden = !design.class;
  button.classList.toggle("picked", Boolean(state.mixFirst && state.mixFirst.id === design.id));
}

// Put designs in the grid, reusing the tiles already there (nothing jumps while new pictures arrive).
function fillGrid(designs, title) {
  state.designs = designs;
  $("grid-title").textContent = title;
  const grid = $("grid");
  const tiles = [...grid.children];
  designs.forEach((d, i) => {
    if (tiles[i]) setTile(tiles[i], d);
    else grid.append(tile(d, onGridTap));
  });
  for (const extra of tiles.slice(designs.length)) extra.remove();
  window.atelier.gridLoads += 1;
  applyGridLayout();
}

// A grid screen (other scripts call it too: inspire.js shows its designs with it).
function renderGrid(designs, title, visible = true) {
  const screen = { view: "grid", designs, title };
  const replace = topScreen() && topScreen().view === "grid" && !topScreen().picking;
  go(screen, { replace, render: false });
  fillGrid(designs, title);
  if (visible) show("view-grid");
}

function onGridTap(design, button) {
  if (state.mixFirst) {
    if (design.id === state.mixFirst.id) {
      toast("That is your first pick: tap a different design to mix with it.");
      return;
    }
    button.classList.add("picked");
    mix(state.mixFirst, design);
    return;
  }
  openDesign(design, true);
}

// Loading: the tiles stay in place, dimmed, with a line that says what is happening.
function setLoading(on, text = "Designing…") {
  state.loading += on ? 1 : -1;
  const busy = state.loading > 0;
  $("grid").setAttribute("aria-busy", String(busy));
  document.body.classList.toggle("loading", busy);
  $("grid-status").textContent = busy ? text : "";
  $("btn-new").disabled = busy;
}

// Wait until the pictures are decoded (they come from the kiosk's cache), so they appear all at once.
async function preload(designs) {
  await Promise.all(designs.map((d) => {
    const img = new Image();
    img.src = d.url;
    return img.decode().catch(() => undefined);
  }));
}

async function loadGrid(request, title) {
  setLoading(true);
  try {
    const data = await request();
    await preload(data.designs);
    return data.designs;
  } catch (err) {
    toast(shopperWords(err));
    return null;
  } finally {
    setLoading(false);
  }
}

// The detail screen --------------------------------------------------------------------------------------

function describe(design) {
  const what = {
    sample: "A new design",
    neighbour: "Like the one before",
    mix: `Mix, step ${design.step} of ${design.steps}`,
    encoded: "From your garment",
  }[design.op] || "A design";
  return design.class ? `${what} · ${design.class}` : what;
}

function openDesign(design, push = true) {
  go({ view: "detail", design }, { replace: !push });
}

function showDesign(design) {
  state.current = design;
  const img = $("detail-img");
  // With the bundle's learned upscaler the big picture is its 2x enlargement (sharper than the browser's own).
  img.src = state.info.ui.sharp_2x ? `${design.url}?scale=2` : design.url;
  $("detail-caption").textContent = describe(design);
  $("detail-id").textContent = design.id;
  show("view-detail");
  // Save at the size it is shown, enlarged on the kiosk (learned 2x upscaler, then the C++ bilinear kernel).
  requestAnimationFrame(() => {
    const shownPx = img.getBoundingClientRect().width * (window.devicePixelRatio || 1);
    const scale = Math.max(1, Math.min(state.info.ui.max_scale, Math.round(shownPx / state.info.size_px)));
    const save = $("btn-save");
    save.href = `${design.url}?scale=${scale}`;
    save.download = `atelier-${design.id}.png`;
  });
}

function layoutDetail() {
  const main = $("main").getBoundingClientRect();
  const maxPx = state.info.size_px * DETAIL_ENLARGE_MAX;
  const portrait = main.height > main.width * 1.1;
  $("detail").classList.toggle("portrait", portrait);
  const side = portrait ? 0 : Math.min(420, Math.max(260, main.width * 0.32));
  const below = portrait ? 300 : 0; // caption, four buttons in two rows, the share code
  const gap = 24;
  const size = Math.floor(Math.min(maxPx, main.width - side - (side ? gap : 0) - 40, main.height - below - 40));
  $("detail-img").style.width = `${Math.max(MIN_TILE_PX, size)}px`;
}

// The mix screen -----------------------------------------------------------------------------------------

function showMix(screen) {
  const strip = $("mix-strip");
  strip.replaceChildren(...screen.designs.map((d) => tile(d, (x) => openDesign(x, true))));
  $("mix-note").textContent = screen.note || "";
  show("view-mix");
  if (screen.note === undefined) checkMixSpread(screen);
}

function layoutMix() {
  const strip = $("mix-strip");
  const k = strip.children.length;
  if (!k) return;
  const box = $("mix-wrap").getBoundingClientRect();
  const gap = 12;
  const maxTile = state.info.size_px * ENLARGE_MAX;
  const fit = Math.floor((box.width - gap * (k - 1)) / k);
  const high = Math.floor(box.height - 8);
  // All steps in one row when they fit at a useful size; else larger tiles, about 3.4 in view, and a hint.
  const size = fit >= MIN_TILE_PX ? Math.min(fit, maxTile, high)
    : Math.max(MIN_TILE_PX, Math.min(high, maxTile, Math.floor(box.width / 3.4)));
  strip.style.setProperty("--tile", `${size}px`);
  requestAnimationFrame(updateMixHint);
}

function updateMixHint() {
  const strip = $("mix-strip");
  const more = strip.scrollWidth - strip.clientWidth - strip.scrollLeft > 4;
  $("mix-more").hidden = !more;
  $("mix-wrap").classList.toggle("more", more);
}

// Two near-identical picks make a mix of near-identical steps: say so, rather than show 7 copies.
async function checkMixSpread(screen) {
  const designs = screen.designs;
  const pixels = await Promise.all([designs[0], designs[designs.length - 1]].map(async (d) => {
    const img = new Image();
    img.src = d.url;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, 32, 32);
    return ctx.getImageData(0, 0, 32, 32).data;
  })).catch(() => null);
  if (!pixels) return;
  let diff = 0;
  for (let i = 0; i < pixels[0].length; i += 4) {
    diff += Math.abs(pixels[0][i] - pixels[1][i]) + Math.abs(pixels[0][i + 1] - pixels[1][i + 1])
      + Math.abs(pixels[0][i + 2] - pixels[1][i + 2]);
  }
  const mean = diff / ((pixels[0].length / 4) * 3);
  screen.spread = mean;
  screen.note = mean < 6 ? "These two designs are almost the same, so the steps between them look alike. "
    + "For a bigger change, mix two designs that look different." : "";
  if (topScreen() === screen) $("mix-note").textContent = screen.note;
  window.atelier.mixSpread = mean;
}

// Actions ------------------------------------------------------------------------------------------------

async function newDesigns() {
  const n = gridCount();
  const designs = await loadGrid(() => api("/api/generate", withClass({ n })));
  if (!designs) return;
  const screen = { view: "grid", designs, title: whatTitle() };
  const replace = topScreen() && topScreen().view === "grid" && !topScreen().picking;
  go(screen, { replace });
}

async function moreLikeThis() {
  const parent = state.current;
  const n = gridCount();
  show("view-grid"); // the tiles stay where they are while the new ones are made
  const designs = await loadGrid(() => api("/api/neighbours", { id: parent.id, n }));
  if (!designs) { renderScreen(topScreen()); return; }
  go({ view: "grid", designs, title: "More like this" });
}

function startMix() {
  const below = state.stack.slice(0, -1).reverse().find((s) => s.view === "grid");
  const designs = below ? below.designs : state.designs;
  go({ view: "grid", designs, title: below ? below.title : whatTitle(), picking: state.current });
}

async function mix(a, b) {
  setLoading(true, "Mixing…");
  try {
    const data = await api("/api/mix", { a: a.id, b: b.id, steps: state.info.ui.mix_steps });
    await preload(data.designs);
    go({ view: "mix", designs: data.designs, a, b }, { replace: true }); // Back goes to where the mix began
  } catch (err) {
    toast(shopperWords(err));
  } finally {
    setLoading(false);
  }
}

function goHome() {
  state.stack = [];
  newDesigns();
}

// A shared link /d/<id>: the design, or plain words and a way on when the link is bad or too old.
async function openFromUrl(path) {
  const match = path.match(/^\/d\/([^/]+)$/);
  if (!match) return false;
  try {
    const design = await api(`/api/design/${encodeURIComponent(match[1])}`);
    go({ view: "detail", design });
  } catch (err) {
    const old = err.status === 409;
    go({
      view: "message",
      title: old ? "This design is from an earlier collection" : "This design link does not work",
      text: old ? "The designer has learned new things since it was made, so it cannot be shown any more. "
        + "Have a look at the new designs instead."
        : "It may have been copied only in part. Have a look at the new designs instead.",
    });
  }
  return true;
}

function selectClass(classId) {
  state.classId = classId;
  for (const chip of $("classes").children) {
    chip.setAttribute("aria-pressed", String(chip.dataset.classId === String(classId)));
  }
  newDesigns();
}

function buildClassChips() {
  const nav = $("classes");
  if (!state.info.conditional) return;
  const chip = (label, classId) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = label;
    b.dataset.classId = String(classId);
    b.setAttribute("aria-pressed", String(classId === null));
    b.addEventListener("click", () => selectClass(classId));
    return b;
  };
  nav.replaceChildren(chip("All", null), ...state.info.class_names.map((name, i) => chip(name, i)));
  nav.hidden = false;
}

function layout() {
  if (!state.info) return;
  if (!$("view-grid").hidden) {
    const before = state.layout;
    state.layout = measureGrid();
    applyGridLayout();
    const screen = topScreen();
    // A new screen size wants a different count: fill it afresh (only a plain grid of new designs).
    if (before && screen && screen.view === "grid" && !screen.picking && screen.title === whatTitle()
        && state.layout.n !== state.designs.length && !state.loading) {
      clearTimeout(layout.refill);
      layout.refill = setTimeout(newDesigns, 300);
    }
  }
  if (!$("view-detail").hidden) layoutDetail();
  if (!$("view-mix").hidden) layoutMix();
}

// Attract mode: a latent walk played from strips of frames the kiosk renders in batches ---------------------

class AttractPlayer {
  constructor(info, classId) {
    this.info = info;
    this.classId = classId;
    this.seed = Math.floor(Math.random() * 2 ** 32);
    this.perStrip = info.ui.walk_frames_per_request;
    this.frameMs = 1000 / info.ui.attract_fps;
    this.nextStart = 0;
    this.strips = []; // decoded strips waiting to be played: {bitmap, count}
    this.playing = null;
    this.index = 0;
    this.lastDraw = 0;
    this.stopped = false;
    this.canvas = $("attract-canvas");
    this.canvas.width = this.canvas.height = Math.max(256, info.size_px * ENLARGE_MAX);
    this.ctx = this.canvas.getContext("2d");
    this.ctx.imageSmoothingQuality = "high";
    this.fetching = false;
    this.fill();
    requestAnimationFrame((t) => this.tick(t));
  }

  async fill() {
    if (this.fetching || this.stopped || this.strips.length >= 2) return;
    this.fetching = true;
    const params = new URLSearchParams({ seed: this.seed, start: this.nextStart, count: this.perStrip });
    if (this.classId !== null) params.set("class", this.classId);
    this.nextStart += this.perStrip;
    try {
      const response = await fetch(`/api/walk.png?${params}`);
      if (!response.ok) throw new Error(`walk frames failed (${response.status})`);
      const bitmap = await createImageBitmap(await response.blob());
      if (!this.stopped) this.strips.push({ bitmap, count: this.perStrip });
    } catch (err) {
      window.atelier.errors += 1;
    } finally {
      this.fetching = false;
    }
    this.fill();
  }

  tick(now) {
    if (this.stopped) return;
    if (now - this.lastDraw >= this.frameMs) {
      if (!this.playing || this.index >= this.playing.count) {
        this.playing = this.strips.shift() || null;
        this.index = 0;
        this.fill();
      }
      if (this.playing) {
        const s = this.info.size_px;
        const { width, height } = this.canvas;
        this.ctx.drawImage(this.playing.bitmap, this.index * s, 0, s, s, 0, 0, width, height);
        this.index += 1;
        this.lastDraw = now;
        window.atelier.attractFrames += 1;
      }
    }
    requestAnimationFrame((t) => this.tick(t));
  }

  stop() {
    this.stopped = true;
  }
}

function closeCameraStreams() {
  for (const img of document.querySelectorAll("img[src*='camera.mjpg']")) img.removeAttribute("src");
}

function startAttract() {
  if (state.attract || !state.info) return;
  closeCameraStreams(); // nobody is watching: the camera stream stops with the shopper
  $("attract").hidden = false;
  window.atelier.attractStarts += 1;
  state.attract = new AttractPlayer(state.info, null);
  document.dispatchEvent(new CustomEvent("atelier:attract"));
}

function stopAttract() {
  if (!state.attract) return;
  state.attract.stop();
  state.attract = null;
  $("attract").hidden = true;
}

// A new shopper: nothing of the last one's grid, class or mix is left.
function startFresh() {
  state.classId = null;
  for (const chip of $("classes").children) {
    chip.setAttribute("aria-pressed", String(chip.dataset.classId === "null"));
  }
  state.mixFirst = null;
  state.stack = [];
  history.replaceState({ depth: 1 }, "", "/");
  newDesigns();
  document.dispatchEvent(new CustomEvent("atelier:wake"));
}

function onInput(event) {
  state.lastInput = performance.now();
  if (state.attract) {
    // The touch that ends attract mode only wakes the kiosk: it must not also press what is under the finger
    // once the overlay is gone (the click of this touch arrives after the pointerdown), so swallow it.
    event.preventDefault();
    event.stopPropagation();
    state.swallowClicksUntil = performance.now() + 700;
    stopAttract();
    startFresh();
  }
}

function onClick(event) {
  if (performance.now() < (state.swallowClicksUntil || 0)) {
    event.preventDefault();
    event.stopPropagation();
  }
}

function watchIdle() {
  setInterval(() => {
    const idleMs = performance.now() - state.lastInput;
    if (!state.attract && idleMs >= state.info.ui.attract_idle_s * 1000) startAttract();
  }, 250);
}

// Start ---------------------------------------------------------------------------------------------------

async function main() {
  for (const type of ["pointerdown", "keydown", "wheel", "touchstart"]) {
    window.addEventListener(type, onInput, { capture: true, passive: false });
  }
  window.addEventListener("click", onClick, { capture: true });
  window.addEventListener("contextmenu", (e) => e.preventDefault());
  try {
    state.info = await api("/api/info");
  } catch (err) {
    toast("The kiosk is starting. Please wait a moment.", 10000);
    setTimeout(() => location.reload(), 5000);
    return;
  }
  // ?idle=SECONDS overrides the configured attract-mode timeout (for staff checking a kiosk, and tests).
  const idle = Number(new URLSearchParams(location.search).get("idle"));
  if (idle > 0) state.info.ui.attract_idle_s = idle;
  buildClassChips();
  $("grid-title").textContent = whatTitle();
  $("btn-new").addEventListener("click", () => newDesigns());
  $("btn-more").addEventListener("click", moreLikeThis);
  $("btn-mix").addEventListener("click", startMix);
  $("btn-back").addEventListener("click", back);
  $("btn-mix-back").addEventListener("click", back);
  $("btn-banner-cancel").addEventListener("click", back);
  $("btn-message-ok").addEventListener("click", goHome);
  $("mix-strip").addEventListener("scroll", updateMixHint, { passive: true });
  window.addEventListener("popstate", onPopState);
  window.addEventListener("resize", layout);
  // The grid of new designs comes first; a shared design URL opens that design on top of it.
  const shared = location.pathname;
  await newDesigns();
  await openFromUrl(shared);
  document.body.dataset.ready = "1";
  watchIdle();
}

main();
