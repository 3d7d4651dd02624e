// "Design from my garment" (POST /api/inspire): live preview with a framing guide, a countdown, then the captured
// frame beside the designs made from it (the reconstruction first, then variations). Plain JS, no build step.
// Hooks into the page: it owns the page's entry button #inspire-entry (shown only when /healthz says has_encoder)
// and closes on "atelier:attract"; a design tapped here opens in the page's own detail view (app.js openDesign),
// with the inspired designs as the grid behind it, so "More like this" and "Mix with..." work on them as on any
// design.
"use strict";

(() => {
  const COUNTDOWN_S = 3;
  const ui = { root: null, busy: false, timer: null, camera: false, sizePx: 0 };
  const byId = (id) => document.getElementById(id);
  window.atelier = window.atelier || {};
  window.atelier.inspire = { runs: 0, errors: 0, lastDesigns: [] };

  function build() {
    const root = document.createElement("div");
    root.id = "inspire";
    root.className = "inspire";
    root.hidden = true;
    root.innerHTML = `
      <div class="inspire-card" role="dialog" aria-modal="true" aria-labelledby="inspire-title">
        <div class="inspire-head">
          <h2 id="inspire-title">Design from my garment</h2>
          <button id="inspire-close" class="btn ghost small" type="button">Close</button>
        </div>
        <div class="inspire-body">
          <div class="inspire-live">
            <img id="inspire-preview" class="inspire-preview" alt="Live camera preview">
            <div class="inspire-guide" aria-hidden="true"><span>Hold your garment inside the frame</span></div>
            <div id="inspire-count" class="inspire-count" aria-live="assertive" hidden></div>
            <p id="inspire-nocam" class="inspire-msg" hidden>No camera here: choose a photo instead.</p>
          </div>
          <div class="inspire-side">
            <button id="inspire-shoot" class="btn primary big" type="button">Take the picture</button>
            <label class="btn big inspire-file">Use a photo…
              <input id="inspire-file" type="file" accept="image/jpeg,image/png,image/webp" hidden></label>
            <p id="inspire-msg" class="inspire-msg" role="alert"></p>
          </div>
        </div>
        <div id="inspire-result" class="inspire-result" hidden>
          <figure class="inspire-captured"><img id="inspire-input" alt="The picture the designs start from">
            <figcaption>Your garment</figcaption></figure>
          <div id="inspire-designs" class="inspire-designs" role="list"></div>
        </div>
      </div>`;
    document.body.append(root);
    byId("inspire-close").addEventListener("click", close);
    byId("inspire-shoot").addEventListener("click", countdown);
    byId("inspire-preview").addEventListener("load", placeGuide);
    byId("inspire-file").addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      e.target.value = "";
      if (file) send(file);
    });
    return root;
  }

  // The preview is the live frame alone (view=live); the guide marks its centre square, the square the model sees.
  function placeGuide() {
    const img = byId("inspire-preview");
    const guide = ui.root.querySelector(".inspire-guide");
    const w = img.naturalWidth, h = img.naturalHeight;
    if (!w || !h) return;
    const liveW = w;
    const side = Math.min(liveW, h);
    guide.style.left = `${(100 * (liveW - side)) / 2 / w}%`;
    guide.style.width = `${(100 * side) / w}%`;
    guide.style.top = `${(100 * (h - side)) / 2 / h}%`;
    guide.style.height = `${(100 * side) / h}%`;
  }

  function message(text) {
    byId("inspire-msg").textContent = text || "";
  }

  function open() {
    ui.root = ui.root || build();
    ui.root.hidden = false;
    message("");
    byId("inspire-result").hidden = true;
    const hasCamera = ui.camera;
    byId("inspire-shoot").hidden = !hasCamera;
    byId("inspire-nocam").hidden = hasCamera;
    if (hasCamera) byId("inspire-preview").src = "/camera.mjpg?view=live";
  }

  function close() {
    if (!ui.root) return;
    clearInterval(ui.timer);
    byId("inspire-count").hidden = true;
    byId("inspire-preview").removeAttribute("src"); // closes the MJPEG stream
    ui.root.hidden = true;
  }

  function countdown() {
    if (ui.busy) return;
    let left = COUNTDOWN_S;
    const count = byId("inspire-count");
    count.textContent = String(left);
    count.hidden = false;
    message("");
    clearInterval(ui.timer);
    ui.timer = setInterval(() => {
      left -= 1;
      if (left > 0) { count.textContent = String(left); return; }
      clearInterval(ui.timer);
      count.hidden = true;
      send(null);
    }, 1000);
  }

  async function send(file) {
    if (ui.busy) return;
    ui.busy = true;
    message(file ? "Reading your photo…" : "Designing from your garment…");
    try {
      const options = { method: "POST" };
      if (file) { options.body = file; options.headers = { "Content-Type": file.type || "application/octet-stream" }; }
      const response = await fetch("/api/inspire", options);
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error || `the kiosk could not design from it (${response.status})`);
      show(data);
      message("");
      window.atelier.inspire.runs += 1;
    } catch (err) {
      window.atelier.inspire.errors += 1;
      message(err.message);
    } finally {
      ui.busy = false;
    }
  }

  function show(data) {
    byId("inspire-input").src = data.input;
    const designs = data.designs;
    window.atelier.inspire.lastDesigns = designs.map((d) => d.id);
    byId("inspire-designs").replaceChildren(...designs.map((design, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = i === 0 ? "tile inspire-first" : "tile";
      button.setAttribute("role", "listitem");
      button.dataset.id = design.id;
      const img = document.createElement("img");
      img.alt = i === 0 ? "Design closest to your garment" : "A variation";
      img.src = design.url;
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = i === 0 ? "Closest" : "Variation";
      button.append(img, tag);
      button.addEventListener("click", () => pick(designs, design));
      return button;
    }));
    byId("inspire-result").hidden = false;
  }

  function pick(designs, design) {
    close();
    // The page's own views: the inspired designs become the grid, the tapped one opens large.
    if (typeof renderGrid === "function") renderGrid(designs, "From your garment", false);
    if (typeof openDesign === "function") openDesign(design, true);
  }

  async function init() {
    const entry = byId("inspire-entry"); // the page's one entry button (index.html), hidden until we know
    entry.addEventListener("click", open);
    document.addEventListener("atelier:attract", close); // nobody is watching: the next shopper starts fresh
    try {
      const health = await (await fetch("/healthz")).json();
      ui.sizePx = (await (await fetch("/api/info")).json()).size_px || 0;
      ui.camera = !!health.camera;
      entry.hidden = !health.has_encoder;
      window.atelier.inspire.available = !!health.has_encoder;
    } catch (err) {
      entry.hidden = true;
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
