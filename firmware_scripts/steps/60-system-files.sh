# shellcheck shell=bash
# Step 60: what systemd, udev, journald and PAM read: the two units, the camera and Edge TPU udev rules, the
# journal size limits, and the PAM stack of the browser's automatic tty1 session.

# shellcheck disable=SC2034  # the *_CHANGED flags are read by 70-enable.sh
step_system_files() {
  local before unit rules
  before=$CHANGES
  for unit in "${ATELIER_UNITS[@]}"; do
    install_file "$FIRMWARE_DIR/units/$unit" "$SYSTEMD_UNIT_DIR/$unit" 0644
  done
  install_file "$FIRMWARE_DIR/pam/atelier-browser" "$PAM_DIR/atelier-browser" 0644
  ((CHANGES == before)) || UNITS_CHANGED=1

  before=$CHANGES
  for rules in "$FIRMWARE_DIR"/udev/*.rules; do
    install_file "$rules" "$UDEV_RULES_DIR/${rules##*/}" 0644
  done
  ((CHANGES == before)) || UDEV_CHANGED=1

  before=$CHANGES
  install_file "$FIRMWARE_DIR/journald/atelier.conf" "$JOURNALD_DROPIN_DIR/atelier.conf" 0644
  ((CHANGES == before)) || JOURNALD_CHANGED=1
}

step_system_files
