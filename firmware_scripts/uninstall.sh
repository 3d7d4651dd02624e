#!/usr/bin/env bash
# Remove what provision.sh installed. The captured photos (/var/lib/atelier/captures) stay unless
# --delete-captures is given; the service user stays unless --remove-user is given; system packages stay.
# Idempotent: a second run changes nothing.
set -euo pipefail

PROG=${0##*/}
# shellcheck source=lib.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

usage() {
  cat <<EOF
Usage: sudo $PROG [--root DIR] [--dry-run] [--delete-captures] [--remove-user]

Stop and remove the Atelier kiosk: units, udev rules, journald limits, PAM file, $ATELIER_ETC, $ATELIER_PREFIX,
the installed bundles and the browser profile. Keeps $ATELIER_CAPTURES (the photos for the next fine-tune).

  --root DIR          remove from the system staged under DIR instead of /
  --dry-run           print what would be removed; remove nothing
  --delete-captures   also delete the captured photos (all of $ATELIER_DATA)
  --remove-user       also delete the '$ATELIER_USER' service user (live system only)
  -h, --help          show this help

System packages (chromium, cage, v4l-utils, python3-venv) and the default boot target are left as they are.
EOF
}

main() {
  local delete_captures=0 remove_user=0
  while (($#)); do
    case $1 in
      --root)
        need_value "$@"
        set_root "$2"
        shift 2
        ;;
      --dry-run) DRY_RUN=1 && shift ;;
      --delete-captures) delete_captures=1 && shift ;;
      --remove-user) remove_user=1 && shift ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $1" ;;
    esac
  done
  if ! live_system && [[ ! -d $ROOT ]]; then
    die "--root $ROOT does not exist"
  fi
  require_root_user

  local unit path
  if live_system && [[ -d /run/systemd/system ]]; then
    for unit in "${ATELIER_UNITS[@]}"; do
      if [[ -e $SYSTEMD_UNIT_DIR/$unit ]]; then
        host_cmd systemctl disable --now "$unit" || warn "could not stop $unit; removing it anyway"
      fi
    done
  fi
  for path in \
    "$SYSTEMD_UNIT_DIR/multi-user.target.wants/atelier-kiosk.service" \
    "$SYSTEMD_UNIT_DIR/graphical.target.wants/atelier-browser.service" \
    "$SYSTEMD_UNIT_DIR/atelier-kiosk.service" \
    "$SYSTEMD_UNIT_DIR/atelier-browser.service" \
    "$PAM_DIR/atelier-browser" \
    "$UDEV_RULES_DIR/70-atelier-camera.rules" \
    "$UDEV_RULES_DIR/71-atelier-edgetpu.rules" \
    "$JOURNALD_DROPIN_DIR/atelier.conf" \
    "$ATELIER_ETC" \
    "$ATELIER_PREFIX"; do
    remove_path "$path"
  done
  if ((delete_captures)); then
    remove_path "$ATELIER_DATA"
  else
    remove_path "$ATELIER_MODELS"
    remove_path "$ATELIER_BROWSER_DATA"
    if [[ -d $(at "$ATELIER_CAPTURES") ]]; then
      log "  kept $ATELIER_CAPTURES (pass --delete-captures to delete the photos too)"
    fi
  fi

  if ((remove_user)); then
    if ! live_system; then
      log "  skip (--root): userdel $ATELIER_USER"
    elif id -u "$ATELIER_USER" >/dev/null 2>&1; then
      ((delete_captures)) || warn "the kept captures will belong to a deleted user id"
      CHANGES=$((CHANGES + 1))
      host_cmd userdel "$ATELIER_USER"
    fi
  fi

  if live_system && ((CHANGES > 0)); then
    if [[ -d /run/systemd/system ]]; then  # systemd is running (not a chroot)
      host_cmd systemctl daemon-reload
      host_cmd systemctl try-restart systemd-journald.service
    fi
    if [[ -S /run/udev/control ]]; then
      host_cmd udevadm control --reload
    fi
  fi
  if ((CHANGES == 0)); then
    log "Done: nothing to remove."
  elif ((DRY_RUN)); then
    log "Dry run: $CHANGES removal(s) would be made; nothing was changed."
  else
    log "Done: $CHANGES removal(s). The default boot target is unchanged" \
      "(systemctl set-default multi-user.target for a console box)."
  fi
}

main "$@"
