# shellcheck shell=bash
# Step 20: the service user. A system user with no login shell and no password; its home is the data folder.
# Group memberships: video (cameras, GPU), render (GPU on newer kernels), plugdev and apex (Coral's udev rules).

step_user() {
  local group
  if ! live_system; then
    log "  skip (--root): useradd --system $ATELIER_USER (create it in the image, or run provision.sh on the box)"
    return 0
  fi
  if id -u "$ATELIER_USER" >/dev/null 2>&1; then
    log "  user $ATELIER_USER exists"
  else
    CHANGES=$((CHANGES + 1))
    host_cmd useradd --system --user-group --home-dir "$ATELIER_DATA" --no-create-home \
      --shell /usr/sbin/nologin --comment "Atelier kiosk" "$ATELIER_USER"
  fi
  for group in video render plugdev apex; do
    getent group "$group" >/dev/null || continue
    if ! id -nG "$ATELIER_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
      CHANGES=$((CHANGES + 1))
      host_cmd usermod -a -G "$group" "$ATELIER_USER"
    fi
  done
}

step_user
