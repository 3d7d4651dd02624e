#!/usr/bin/env bash
# Show the kiosk page full screen: Chromium in kiosk mode, inside the `cage` Wayland kiosk compositor when no
# display is running (the usual case: atelier-browser.service starts it on tty1), or directly on an existing
# X11/Wayland display (a desktop box, or a technician testing over a session).
set -euo pipefail

PROG=${0##*/}
# shellcheck source=lib.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--config FILE] [--url URL] [--print-command]

Start Chromium in kiosk mode on the kiosk page.

  --config FILE     kiosk config to read host and port from (default: $ATELIER_CONFIG)
  --url URL         the page to show (default: http://HOST:PORT/ from the config)
  --print-command   print the command instead of running it
  -h, --help        show this help

Environment: ATELIER_CHROMIUM names the browser binary (default: chromium, then chromium-browser).
EOF
}

# chromium_flags URL: the flags for an unattended, offline kiosk.
chromium_flags() {
  local url=$1
  local flags=(
    --kiosk "--app=$url"
    # No crash/restore bubbles, no pinch zoom or swipe-back on the touch screen.
    --noerrdialogs
    --disable-session-crashed-bubble
    --disable-pinch
    --overscroll-history-navigation=0
    --no-first-run
    --no-default-browser-check
    # Nothing in the background reaches for the network: updates, sync, safe browsing, translate, metrics.
    --disable-background-networking
    --disable-component-update
    --disable-sync
    --disable-default-apps
    --disable-extensions
    --disable-component-extensions-with-background-pages
    --disable-client-side-phishing-detection
    --disable-domain-reliability
    --safebrowsing-disable-auto-update
    --metrics-recording-only
    --no-pings
    --disable-breakpad
    "--disable-features=Translate,MediaRouter,OptimizationHints"
    --check-for-update-interval=31536000
    # No keyring prompt; the profile lives on the data partition (the root may be read-only).
    --password-store=basic
    "--user-data-dir=$ATELIER_BROWSER_DATA"
    --ozone-platform-hint=auto
    --autoplay-policy=no-user-gesture-required
  )
  printf '%s\n' "${flags[@]}"
}

find_chromium() {
  local name
  for name in ${ATELIER_CHROMIUM:-} chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

main() {
  local config=$ATELIER_CONFIG url="" print_only=0
  while (($#)); do
    case $1 in
      --config)
        need_value "$@"
        config=$2
        shift 2
        ;;
      --url)
        need_value "$@"
        url=$2
        shift 2
        ;;
      --print-command) print_only=1 && shift ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $1" ;;
    esac
  done
  if [[ -z $url ]]; then
    url=$(kiosk_base_url "$config")
  fi
  [[ $url =~ ^https?://[^[:space:]]+$ ]] || usage_error "--url wants an http:// address, got '$url'"

  local chromium flags cmd
  if ! chromium=$(find_chromium); then
    ((print_only)) || die "no Chromium found (chromium or chromium-browser): run provision.sh, or set ATELIER_CHROMIUM"
    chromium=${ATELIER_CHROMIUM:-chromium}
  fi
  mapfile -t flags < <(chromium_flags "$url")
  if [[ -n ${WAYLAND_DISPLAY:-} || -n ${DISPLAY:-} ]]; then
    cmd=("$chromium" "${flags[@]}")
  else
    # cage: one full-screen Wayland client, no desktop; -s lets a technician switch VTs (Ctrl+Alt+Fn).
    cmd=(cage -s -- "$chromium" "${flags[@]}")
    ((print_only)) || command -v cage >/dev/null 2>&1 ||
      die "no display and no cage: install the cage package (provision.sh does) or start a desktop session"
  fi
  if ((print_only)); then
    quoted "${cmd[@]}"
    printf '\n'
    return 0
  fi
  exec "${cmd[@]}"
}

main "$@"
