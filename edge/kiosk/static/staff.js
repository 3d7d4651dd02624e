// Atelier kiosk staff mode: unlock with the PIN (on-screen keypad) or the staff key (a USB stick), capture
// garments from the live camera, install or roll back models from a list (no file picker, no keyboard needed).
// The session token lives only in this page's memory (never in storage); it is sent as X-Staff-Token.
"use strict";

const staff = { token: null, keepAwake: null, pin: "", classes: [], chosen: "" };
const PIN_MAX = 12;

function staffEl(id) { return document.getElementById(id); }

async function staffApi(path, { method = "GET", json, body } = {}) {
  const headers = {};
  if (staff.token) headers["X-Staff-Token"] = staff.token;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
  } catch (err) {
    return { ok: false, status: 0, data: { error: "The kiosk is not answering. Try again in a moment." } };
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && staff.token) staffLocked("Session ended: unlock again.");
  if (!response.ok && data.detail) console.warn(`${path}: ${data.detail}`);
  return { ok: response.ok, status: response.status, data };
}

function staffMessage(id, text, kind = "") {
  const el = staffEl(id);
  el.textContent = text || "";
  el.dataset.kind = kind;
}

// The PIN keypad ------------------------------------------------------------------------------------------

function staffBuildKeypad() {
  const pad = staffEl("staff-keypad");
  const key = (label, action, extra = "") => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `key ${extra}`.trim();
    b.textContent = label;
    b.addEventListener("click", action);
    return b;
  };
  const digits = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map((d) => key(d, () => staffDigit(d)));
  const erase = key("⌫", () => { staff.pin = staff.pin.slice(0, -1); staffDots(); }, "erase");
  erase.setAttribute("aria-label", "Delete a digit");
  const ok = key("Unlock", () => undefined, "ok");
  ok.type = "submit"; // the form's submit runs staffUnlock
  pad.replaceChildren(...digits, erase, key("0", () => staffDigit("0")), ok);
}

function staffDigit(d) {
  if (staff.pin.length < PIN_MAX) staff.pin += d;
  staffDots();
}

function staffDots() {
  staffEl("staff-pin-dots").textContent = staff.pin ? "●".repeat(staff.pin.length) : "Enter the staff PIN";
  staffEl("staff-pin-dots").classList.toggle("empty", !staff.pin);
}

// Open, close, lock ----------------------------------------------------------------------------------------

function staffOpen() {
  staffEl("staff").hidden = false;
  staffEl("staff-pin").hidden = Boolean(staff.token);
  staffEl("staff-panel").hidden = !staff.token;
  staff.pin = "";
  staffDots();
  if (staff.token) staffShowPanel(); else staffEl("staff-keypad").querySelector(".key").focus();
  // Staff at work are not idle shoppers: keep attract mode away while the overlay is open.
  clearInterval(staff.keepAwake);
  staff.keepAwake = setInterval(() => { if (typeof state !== "undefined") state.lastInput = performance.now(); },
                                1000);
}

function staffClose() {
  staffEl("staff").hidden = true;
  staffEl("staff-preview").removeAttribute("src"); // closes the MJPEG stream
  clearInterval(staff.keepAwake);
}

function staffLocked(text) {
  staff.token = null;
  staffEl("staff-panel").hidden = true;
  staffEl("staff-pin").hidden = false;
  staffEl("staff-preview").removeAttribute("src");
  staffMessage("staff-pin-msg", text || "");
}

async function staffUnlock(event, { key = false } = {}) {
  if (event) event.preventDefault();
  const json = key ? { key: true } : { pin: staff.pin };
  if (!key && !staff.pin) {
    staffMessage("staff-pin-msg", "Type the PIN on the keypad first.", "bad");
    return;
  }
  const { ok, data } = await staffApi("/api/staff/unlock", { method: "POST", json });
  staff.pin = "";
  staffDots();
  if (!ok) {
    staffMessage("staff-pin-msg", data.error || "Refused.", "bad");
    return;
  }
  staff.token = data.token;
  staffMessage("staff-pin-msg", "");
  staffEl("staff-pin").hidden = true;
  staffEl("staff-panel").hidden = false;
  staffShowPanel();
}

// The panel -----------------------------------------------------------------------------------------------

async function staffShowPanel() {
  const { ok, data } = await staffApi("/api/staff/status");
  if (!ok) return;
  // The class chips: what the model designs, then what this store has captured (most captures first).
  const captured = Object.entries(data.captures || {}).sort((a, b) => b[1] - a[1]).map(([name]) => name);
  staff.classes = [...new Set([...(data.model_classes.length ? data.model_classes : data.trained_on || []),
                               ...captured])];
  if (!staff.chosen && staff.classes.length) staff.chosen = staff.classes[0];
  staffChips();
  staffCounts(data.captures);
  staffModel(data.models);
  if (data.camera) staffEl("staff-preview").src = "/camera.mjpg";
  else staffMessage("staff-result", "This kiosk has no camera, so it cannot capture garments.", "bad");
  if (data.store_error) {
    console.warn(`capture store: ${data.store_error}`);
    staffMessage("staff-result", "The capture store cannot be opened: see the kiosk log.", "bad");
  }
  staffBundles();
}

function staffChips() {
  const box = staffEl("staff-class-chips");
  box.replaceChildren(...staff.classes.map((name) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = name;
    b.setAttribute("aria-pressed", String(name === staff.chosen && !staffEl("staff-class").value));
    b.addEventListener("click", () => { staff.chosen = name; staffEl("staff-class").value = ""; staffChips(); });
    return b;
  }));
}

function staffClass() {
  return staffEl("staff-class").value.trim() || staff.chosen;
}

function staffCounts(counts) {
  const parts = Object.entries(counts || {}).map(([name, n]) => `${name}: ${n}`);
  staffEl("staff-counts").textContent = parts.length ? `Captured so far: ${parts.join(", ")}` : "No captures yet.";
}

function staffModel(models) {
  const active = (models.active || "").split("/").pop();
  let text = `Serving ${active}.`;
  if (models.verifying) text += ` Checking ${models.verifying}…`;
  if (models.model_error) {
    text += ` The last model tried (${models.model_error.bundle.split("/").pop()}) failed its checks.`;
    console.warn(`model rejected: ${models.model_error.error}`);
  }
  staffEl("staff-model").textContent = text;
  staffEl("staff-rollback").disabled = !models.previous;
}

async function staffBundles() {
  const box = staffEl("staff-bundles");
  const { ok, data } = await staffApi("/api/staff/bundles");
  if (!ok) return;
  if (!data.bundles.length) {
    const p = document.createElement("p");
    p.className = "caption small";
    p.textContent = "No other models found. Plug in a USB stick with a bundle, then tap Look again.";
    box.replaceChildren(p);
    return;
  }
  box.replaceChildren(...data.bundles.map((b) => {
    const row = document.createElement("button");
    row.type = "button";
    row.className = "bundle";
    row.setAttribute("role", "listitem");
    row.disabled = b.active;
    const where = b.where === "usb" ? "USB stick" : "on the kiosk";
    const label = b.file && b.file !== b.name ? `${b.name} (${b.file})` : b.name;
    row.textContent = b.active ? `${label}, serving now` : `${label} · ${where}`;
    row.addEventListener("click", () => staffInstall(b));
    return row;
  }));
}

async function staffInstall(bundle) {
  staffMessage("staff-result", `Checking ${bundle.name}… (this takes a few seconds)`);
  const { ok, data } = await staffApi("/api/staff/bundles/install", { method: "POST", json: { id: bundle.id } });
  staffMessage("staff-result", ok ? `Installed: now serving ${bundle.name}.` : data.error, ok ? "good" : "bad");
  staffRefreshModel();
}

async function staffRefreshModel() {
  const status = await staffApi("/api/staff/models");
  if (status.ok) staffModel(status.data);
  staffBundles();
}

async function staffCapture() {
  const button = staffEl("staff-capture");
  const cls = staffClass();
  if (!cls) {
    staffMessage("staff-result", "Pick a garment class first.", "bad");
    return;
  }
  button.disabled = true;
  staffMessage("staff-result", "Capturing…");
  try {
    const { ok, data } = await staffApi("/api/staff/capture", { method: "POST", json: { class: cls } });
    if (!ok) {
      staffMessage("staff-result", data.error || "Refused.", "bad");
      return;
    }
    const cap = data.capture;
    let text = `Saved a ${cap.class_name}.`;
    if (cap.faces_blurred) text += ` ${cap.faces_blurred === 1 ? "A face was" : `${cap.faces_blurred} faces were`} blurred.`;
    if (data.new_class) text += " A new class: the next fine-tune teaches it to the model.";
    staffMessage("staff-result", text, "good");
    staffCounts(data.counts);
    if (!staff.classes.includes(cap.class_name)) { staff.classes.push(cap.class_name); staffChips(); }
    const shot = await fetch(data.url, { headers: { "X-Staff-Token": staff.token } });
    if (shot.ok) {
      const img = staffEl("staff-last");
      if (img.src) URL.revokeObjectURL(img.src);
      img.src = URL.createObjectURL(await shot.blob());
      img.hidden = false;
    }
  } finally {
    button.disabled = false;
  }
}

async function staffRollback() {
  const { ok, data } = await staffApi("/api/staff/models/rollback", { method: "POST" });
  staffMessage("staff-result", ok ? "Rolled back: the previous model is serving again." : data.error,
               ok ? "good" : "bad");
  staffRefreshModel();
}

document.addEventListener("DOMContentLoaded", () => {
  staffBuildKeypad();
  staffDots();
  staffEl("btn-staff").addEventListener("click", staffOpen);
  staffEl("staff-pin").addEventListener("submit", staffUnlock);
  staffEl("staff-key").addEventListener("click", () => staffUnlock(null, { key: true }));
  staffEl("staff-cancel").addEventListener("click", staffClose);
  staffEl("staff-close").addEventListener("click", staffClose);
  staffEl("staff-lock").addEventListener("click", async () => {
    await staffApi("/api/staff/lock", { method: "POST" });
    staffLocked("Locked.");
  });
  staffEl("staff-class").addEventListener("input", staffChips);
  staffEl("staff-capture").addEventListener("click", staffCapture);
  staffEl("staff-rollback").addEventListener("click", staffRollback);
  staffEl("staff-rescan").addEventListener("click", staffBundles);
  // A keyboard, where there is one, types the PIN too.
  document.addEventListener("keydown", (e) => {
    if (staffEl("staff").hidden || staffEl("staff-pin").hidden) return;
    if (/^[0-9]$/.test(e.key)) staffDigit(e.key);
    else if (e.key === "Backspace") { staff.pin = staff.pin.slice(0, -1); staffDots(); }
    else if (e.key === "Enter") staffUnlock(e);
  });
});
