// Atelier kiosk staff mode: unlock with the PIN, capture garments from the live camera, manage the model.
// The session token lives only in this page's memory (never in storage); it is sent as X-Staff-Token.
"use strict";

const staff = { token: null, keepAwake: null };

function staffEl(id) { return document.getElementById(id); }

async function staffApi(path, { method = "GET", json, body } = {}) {
  const headers = {};
  if (staff.token) headers["X-Staff-Token"] = staff.token;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && staff.token) staffLocked("Session ended: unlock again.");
  return { ok: response.ok, status: response.status, data };
}

function staffMessage(id, text, kind = "") {
  const el = staffEl(id);
  el.textContent = text || "";
  el.dataset.kind = kind;
}

function staffOpen() {
  staffEl("staff").hidden = false;
  staffEl("staff-pin").hidden = Boolean(staff.token);
  staffEl("staff-panel").hidden = !staff.token;
  if (staff.token) staffShowPanel(); else staffEl("staff-pin-input").focus();
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

async function staffUnlock(event) {
  event.preventDefault();
  const input = staffEl("staff-pin-input");
  const { ok, data } = await staffApi("/api/staff/unlock", { method: "POST", json: { pin: input.value } });
  input.value = "";
  if (!ok) {
    staffMessage("staff-pin-msg", data.error || "refused", "bad");
    return;
  }
  staff.token = data.token;
  staffMessage("staff-pin-msg", "");
  staffEl("staff-pin").hidden = true;
  staffEl("staff-panel").hidden = false;
  staffShowPanel();
}

async function staffShowPanel() {
  const { ok, data } = await staffApi("/api/staff/status");
  if (!ok) return;
  const list = staffEl("staff-classes");
  list.replaceChildren(...data.model_classes.map((name) => Object.assign(document.createElement("option"),
                                                                          { value: name })));
  if (!staffEl("staff-class").value && data.model_classes.length) staffEl("staff-class").value = data.model_classes[0];
  staffCounts(data.captures);
  staffModel(data.models);
  if (data.camera) staffEl("staff-preview").src = "/camera.mjpg";
  else staffMessage("staff-result", "This kiosk has no camera.", "bad");
  if (data.store_error) staffMessage("staff-result", data.store_error, "bad");
}

function staffCounts(counts) {
  const parts = Object.entries(counts || {}).map(([name, n]) => `${name}: ${n}`);
  staffEl("staff-counts").textContent = parts.length ? `Captured — ${parts.join(", ")}` : "No captures yet.";
}

function staffModel(models) {
  const active = (models.active || "").split("/").pop();
  let text = `Serving ${active}.`;
  if (models.verifying) text += ` Checking ${models.verifying}…`;
  if (models.model_error) text += ` Rejected ${models.model_error.bundle.split("/").pop()}: ${models.model_error.error}`;
  staffEl("staff-model").textContent = text;
  staffEl("staff-rollback").disabled = !models.previous;
}

async function staffCapture() {
  const button = staffEl("staff-capture");
  button.disabled = true;
  staffMessage("staff-result", "Capturing…");
  try {
    const { ok, data } = await staffApi("/api/staff/capture", { method: "POST",
                                                               json: { class: staffEl("staff-class").value } });
    if (!ok) {
      staffMessage("staff-result", data.error || "refused", "bad");
      return;
    }
    const cap = data.capture;
    let text = `Saved ${cap.class_name}.`;
    if (cap.faces_blurred) text += ` ${cap.faces_blurred} face(s) blurred.`;
    if (data.new_class) text += " A new class: fine-tune adds it to the model.";
    staffMessage("staff-result", text, "good");
    staffCounts(data.counts);
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

async function staffUpload(event) {
  const file = event.target.files[0];
  if (!file) return;
  staffMessage("staff-result", `Checking ${file.name}…`);
  const { ok, data } = await staffApi("/api/staff/models", { method: "POST", body: file });
  staffMessage("staff-result", ok ? `Now serving model ${data.model_id}.` : data.error, ok ? "good" : "bad");
  event.target.value = "";
  const status = await staffApi("/api/staff/models");
  if (status.ok) staffModel(status.data);
}

async function staffRollback() {
  const { ok, data } = await staffApi("/api/staff/models/rollback", { method: "POST" });
  staffMessage("staff-result", ok ? `Rolled back: serving model ${data.model_id}.` : data.error, ok ? "good" : "bad");
  const status = await staffApi("/api/staff/models");
  if (status.ok) staffModel(status.data);
}

document.addEventListener("DOMContentLoaded", () => {
  staffEl("btn-staff").addEventListener("click", staffOpen);
  staffEl("staff-pin").addEventListener("submit", staffUnlock);
  staffEl("staff-cancel").addEventListener("click", staffClose);
  staffEl("staff-close").addEventListener("click", staffClose);
  staffEl("staff-lock").addEventListener("click", async () => {
    await staffApi("/api/staff/lock", { method: "POST" });
    staffLocked("Locked.");
  });
  staffEl("staff-capture").addEventListener("click", staffCapture);
  staffEl("staff-upload").addEventListener("change", staffUpload);
  staffEl("staff-rollback").addEventListener("click", staffRollback);
});
