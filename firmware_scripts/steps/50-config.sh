# shellcheck shell=bash
# Step 50: the kiosk config, /etc/atelier/kiosk.toml (read by `atelier kiosk --config`). A fresh box gets the
# full default config; an existing one keeps its edits, and only the detected hardware/delegate (plus bundle and
# camera when given on the command line) are updated. --force-config rewrites it (old copy: kiosk.toml.bak).

render_config() {
  cat <<EOF_CONFIG
# Atelier kiosk configuration, read by \`atelier kiosk --config $ATELIER_CONFIG\`.
# Written by firmware_scripts/provision.sh. Your edits are kept when it runs again: it only updates
# hardware and delegate (and bundle/camera when given on its command line).

# The bundle folder to serve.
bundle = $(toml_string "$ATELIER_MODELS/$BUNDLE_NAME")
# Watched for new bundles (copy a bundle in under a dot-name, then rename it).
models_dir = $(toml_string "$ATELIER_MODELS")
# Captured garment photos: a training dataset. uninstall.sh keeps it unless told otherwise.
capture_store = $(toml_string "$ATELIER_CAPTURES")
# Camera URI: v4l2:///dev/... (the udev rule names the camera /dev/atelier-camera), file://..., synthetic://
camera = $(toml_string "$CAMERA_URI")
# The kiosk page and /healthz: keep them on loopback.
host = "127.0.0.1"
port = 8000
# Inference delegate: "cpu" | "edgetpu" | "gpu" (written by detect_hardware.sh).
delegate = $(toml_string "$HW_DELEGATE")
# Interpreter threads for the generator.
num_threads = 2
# "jetson" | "coral-devboard" | "coral-usb" | "generic" (written by detect_hardware.sh).
hardware = $(toml_string "$HW_HARDWARE")
EOF_CONFIG
}

# updated_config FILE: FILE with the keys this run owns set, every other line as it was.
updated_config() {
  local content
  content=$(<"$1")
  content=$(toml_set hardware "$(toml_string "$HW_HARDWARE")" <<<"$content")
  content=$(toml_set delegate "$(toml_string "$HW_DELEGATE")" <<<"$content")
  if ((BUNDLE_GIVEN)); then
    content=$(toml_set bundle "$(toml_string "$ATELIER_MODELS/$BUNDLE_NAME")" <<<"$content")
  fi
  if ((CAMERA_GIVEN)); then
    content=$(toml_set camera "$(toml_string "$CAMERA_URI")" <<<"$content")
  fi
  printf '%s\n' "$content"
}

step_config() {
  local target new owner="root:$ATELIER_USER" status=0
  detect_hardware
  log "  detected hardware: $HW_HARDWARE, delegate: $HW_DELEGATE${HW_LIBEDGETPU:+ (Edge TPU runtime: $HW_LIBEDGETPU)}"
  install_dir "$ATELIER_ETC" 0755
  target=$(at "$ATELIER_CONFIG")
  new=$(mktemp)
  if [[ -f $target ]] && ((!FORCE_CONFIG)); then
    updated_config "$target" >"$new"
  else
    render_config >"$new"
    if [[ -f $target ]] && ! cmp -s -- "$new" "$target"; then
      install_file "$target" "$ATELIER_CONFIG.bak" 0640 "$owner"
    fi
  fi
  install_file "$new" "$ATELIER_CONFIG" 0640 "$owner" || status=$?
  rm -f -- "$new"
  return "$status"
}

step_config
