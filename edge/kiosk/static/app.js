// Atelier kiosk page: plain JS, no build step, no network beyond this kiosk's own server.
"use strict";

const state = {
  info: null,
  classId: null, // null: every class (conditional models only)
  designs: [], // the designs in the grid
  current: null, // the design shown large
  mixFirst: null, // first pick of a mix, while choosing the second
  lastInput: performance.now(),
  attract: null, // running attract-mode player, or null
};

// Counters the browser test reads (and handy in devtools).
window.atelier = { attractFrames: 0, attractStarts: 0, gridLoads: 0, errors: 0 };

const $ = (id) => document.getElementById(id);

function toast(message, ms = 3500) {
  const el = $("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, ms);
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    window.atelier.errors += 1;
    throw new Error(data.error || `request failed (${response.status})`);
  }
  return data;
}

function withClass(body) {
  if (state.info.conditional && state.classId !== null) body.class = state.classId;
  return body;
}

// Views --------------------------------------------------------------------------------------------------

function show(view) {
  for (const id of ["view-grid", "view-detail", "view-mix", "view-camera"]) $(id).hidden = id !== view;
  if (view !== "view-camera") $("camera-img").removeAttribute("src"); // closes the MJPEG stream
}

function setBanner(text) {
  $("banner").hidden = !text;
  $("banner-text").textContent = text || "";
}

function tile(design, onTap) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.setAttribute("role", "listitem");
  button.dataset.id = design.id;
  const img = document.createElement("img");
  img.alt = design.class ? `${design.class} design` : "design";
  img.decoding = "async";
  img.src = design.url;
  button.append(img);
  if (design.class) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = design.class;
    button.append(tag);
  }
  button.addEventListener("click", () => onTap(design, button));
  return button;
}

function renderGrid(designs, title, visible = true) {
  state.designs = designs;
  $("grid-title").textContent = title;
  const grid = $("grid");
  grid.replaceChildren(...designs.map((d) => tile(d, onGridTap)));
  window.atelier.gridLoads += 1;
  if (visible) show("view-grid");
}

function onGridTap(design, button) {
  if (state.mixFirst) {
    if (design.id === state.mixFirst.id) return;
    button.classList.add("picked");
    mix(state.mixFirst, design);
    return;
  }
  openDesign(design, true);
}

function describe(design) {
  const what = {
    sample: "New design",
    neighbour: "Like the one before",
    mix: `Mix, step ${design.step} of ${design.steps}`,
  }[design.op] || "Design";
  return design.class ? `${what} · ${design.class}` : what;
}

function openDesign(design, push) {
  state.current = design;
  const img = $("detail-img");
  img.src = design.url;
  $("detail-caption").textContent = describe(design);
  $("detail-id").textContent = design.id;
  show("view-detail");
  // Save at the size it is shown, enlarged on the kiosk by the C++ upscale kernel.
  requestAnimationFrame(() => {
    const shownPx = img.getBoundingClientRect().width * (window.devicePixelRatio || 1);
    const ui = state.info.ui;
    const scale = Math.max(1, Math.min(ui.max_scale, Math.round(shownPx / state.info.size_px)));
    const save = $("btn-save");
    save.href = `${design.url}?scale=${scale}`;
    save.download = `atelier-${design.id}.png`;
  });
  if (push) history.pushState({ id: design.id }, "", design.page);
}

function backToGrid() {
  state.mixFirst = null;
  setBanner("");
  show("view-grid");
  if (location.pathname !== "/") history.pushState({}, "", "/");
}

// Actions ------------------------------------------------------------------------------------------------

async function newDesigns(visible = true) {
  try {
    const data = await api("/api/generate", withClass({ n: state.info.ui.grid_size }));
    renderGrid(data.designs, "New designs", visible);
    if (!visible) return;
    state.mixFirst = null;
    setBanner("");
    if (location.pathname !== "/") history.pushState({}, "", "/");
  } catch (err) {
    toast(err.message);
  }
}

async function moreLikeThis() {
  const parent = state.current;
  try {
    const data = await api("/api/neighbours", { id: parent.id, n: state.info.ui.grid_size });
    renderGrid(data.designs, "More like this");
    history.pushState({}, "", "/");
  } catch (err) {
    toast(err.message);
  }
}

function startMix() {
  state.mixFirst = state.current;
  setBanner("Tap a second design to mix with it");
  show("view-grid");
  history.pushState({}, "", "/");
}

async function mix(a, b) {
  try {
    const data = await api("/api/mix", { a: a.id, b: b.id, steps: state.info.ui.mix_steps });
    state.mixFirst = null;
    setBanner("");
    $("mix-strip").replaceChildren(...data.designs.map((d) => tile(d, (x) => openDesign(x, true))));
    show("view-mix");
  } catch (err) {
    toast(err.message);
  }
}

async function openFromUrl() {
  const match = location.pathname.match(/^\/d\/([^/]+)$/);
  if (!match) return false;
  try {
    openDesign(await api(`/api/design/${encodeURIComponent(match[1])}`), false);
    return true;
  } catch (err) {
    toast(err.message);
    history.replaceState({}, "", "/");
    return false;
  }
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
    this.canvas.width = this.canvas.height = Math.max(256, info.size_px * 8);
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

function startAttract() {
  if (state.attract || !state.info) return;
  $("attract").hidden = false;
  window.atelier.attractStarts += 1;
  state.attract = new AttractPlayer(state.info, state.info.conditional ? state.classId : null);
}

function stopAttract() {
  if (!state.attract) return;
  state.attract.stop();
  state.attract = null;
  $("attract").hidden = true;
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
    backToGrid();
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
    toast(`The kiosk is not ready: ${err.message}`, 10000);
    return;
  }
  // ?idle=SECONDS overrides the configured attract-mode timeout (for staff checking a kiosk, and tests).
  const idle = Number(new URLSearchParams(location.search).get("idle"));
  if (idle > 0) state.info.ui.attract_idle_s = idle;
  buildClassChips();
  $("btn-new").addEventListener("click", () => newDesigns());
  $("btn-more").addEventListener("click", moreLikeThis);
  $("btn-mix").addEventListener("click", startMix);
  $("btn-back").addEventListener("click", backToGrid);
  $("btn-mix-back").addEventListener("click", backToGrid);
  $("btn-banner-cancel").addEventListener("click", backToGrid);
  if (state.info.camera) {
    $("btn-camera").hidden = false;
    $("btn-camera").addEventListener("click", () => {
      $("camera-img").src = "/camera.mjpg";
      show("view-camera");
    });
    $("btn-camera-back").addEventListener("click", backToGrid);
  }
  window.addEventListener("popstate", async () => {
    if (!(await openFromUrl())) { state.mixFirst = null; setBanner(""); show("view-grid"); }
  });
  // A shared design URL opens that design; the grid behind it is filled quietly.
  const opened = await openFromUrl();
  await newDesigns(!opened);
  document.body.dataset.ready = "1";
  watchIdle();
}

main();
