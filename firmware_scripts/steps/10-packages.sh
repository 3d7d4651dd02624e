# shellcheck shell=bash
# Step 10: system packages. Python's venv module, the browser and the cage kiosk compositor for the screen,
# v4l-utils for looking at the camera (v4l2-ctl --list-devices); a compiler only when building from the repo.

step_packages() {
  local wanted=(python3-venv v4l-utils cage) missing=() pkg
  if ((SKIP_PACKAGES)); then
    log "  skip (--skip-packages): system packages"
    return 0
  fi
  # Debian ships the browser as `chromium`, Ubuntu (Jetson's L4T) as `chromium-browser`.
  if grep -qs '^ID=ubuntu' "$(at /etc/os-release)"; then
    wanted+=(chromium-browser)
  else
    wanted+=(chromium)
  fi
  if ((!SKIP_VENV)) && [[ -z $WHEEL ]]; then
    wanted+=(g++ python3-dev)  # the C++ kernels are compiled when the app is installed from the repo
  fi
  if ! live_system; then
    log "  skip (--root): apt-get install ${wanted[*]}"
    return 0
  fi
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "  system packages already installed"
    return 0
  fi
  CHANGES=$((CHANGES + 1))
  host_cmd apt-get update -qq
  host_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

step_packages
