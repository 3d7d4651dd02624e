# shellcheck shell=bash
# Step 70: enable the units (the same symlinks `systemctl enable` makes, so a staged tree boots with them),
# boot into graphical.target (where the browser hangs), then, on the live system only, reload what changed and
# (re)start the kiosk.

# ensure_graphical_default: make graphical.target the default target unless it already is.
ensure_graphical_default() {
  local link current=""
  link=$(at "$SYSTEMD_UNIT_DIR/default.target")
  if [[ -L $link ]]; then
    current=$(basename -- "$(readlink -- "$link")")
  elif live_system && command -v systemctl >/dev/null 2>&1; then
    current=$(systemctl get-default 2>/dev/null || true)
  fi
  if [[ $current != graphical.target ]]; then
    install_symlink /lib/systemd/system/graphical.target "$SYSTEMD_UNIT_DIR/default.target"
  fi
}

step_enable() {
  install_symlink "$SYSTEMD_UNIT_DIR/atelier-kiosk.service" \
    "$SYSTEMD_UNIT_DIR/multi-user.target.wants/atelier-kiosk.service"
  install_symlink "$SYSTEMD_UNIT_DIR/atelier-browser.service" \
    "$SYSTEMD_UNIT_DIR/graphical.target.wants/atelier-browser.service"
  ensure_graphical_default

  if ! live_system; then
    log "  skip (--root): systemctl daemon-reload, udevadm reload, starting the services (they start on boot)"
    return 0
  fi
  if [[ -e /etc/systemd/system/display-manager.service ]]; then
    warn "a display manager ($(basename -- "$(readlink -f /etc/systemd/system/display-manager.service)")) also" \
      "wants the screen; disable it (systemctl disable display-manager) so the kiosk browser gets tty1"
  fi
  if ((UDEV_CHANGED)); then
    if [[ -S /run/udev/control ]]; then
      host_cmd udevadm control --reload
      host_cmd udevadm trigger --action=change --subsystem-match=video4linux --subsystem-match=apex \
        --subsystem-match=usb
    else
      log "  udevd is not running here: the rules apply from the next boot"
    fi
  fi
  # sd_booted(3): systemd is PID 1 only when /run/systemd/system exists (not in a chroot or most containers).
  if [[ ! -d /run/systemd/system ]]; then
    log "  systemd is not running here (a chroot or container): the units are enabled and start on the next boot"
    return 0
  fi
  ((!UNITS_CHANGED)) || host_cmd systemctl daemon-reload
  ((!JOURNALD_CHANGED)) || host_cmd systemctl restart systemd-journald.service
  if ((NO_START)); then
    log "  skip (--no-start): starting ${ATELIER_UNITS[*]}"
  elif ((CHANGES > 0)); then
    host_cmd systemctl restart "${ATELIER_UNITS[@]}"
  else
    host_cmd systemctl start "${ATELIER_UNITS[@]}"  # no-op when they run; starts them after a manual stop
  fi
}

step_enable
