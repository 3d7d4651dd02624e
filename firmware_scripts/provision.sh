#!/usr/bin/env bash
# Provision an Atelier kiosk box (Jetson, Coral, or plain Linux with a camera and a screen) in one run.
#
# Runs the numbered steps in steps/ in order; each is idempotent, so running this again changes nothing unless
# something (the bundle, the wheel, these scripts) changed. With --root DIR it lays the same files down under DIR
# (a staging tree or an image) and leaves the host alone; with --dry-run it only says what it would do.
set -euo pipefail

PROG=${0##*/}
FIRMWARE_DIR=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
# shellcheck source=lib.sh
source "$FIRMWARE_DIR/lib.sh"
# shellcheck source=detect_hardware.sh
source "$FIRMWARE_DIR/detect_hardware.sh"

# The repository checkout these scripts came from, when they run from one (not from /opt/atelier/firmware).
REPO_DIR=""
if [[ -f $FIRMWARE_DIR/../pyproject.toml ]]; then
  REPO_DIR=$(dirname -- "$FIRMWARE_DIR")
fi

usage() {
  cat <<EOF
Usage: sudo $PROG [options]

Provision this box as an Atelier kiosk: system packages, the '$ATELIER_USER' service user, the app in a venv
under $ATELIER_PREFIX, a model bundle under $ATELIER_MODELS, the config $ATELIER_CONFIG, systemd units,
udev rules and journald limits. Safe to run again: a second run changes nothing.

Options:
  --root DIR          lay the files down under DIR instead of / (a staging tree or an image); packages, the
                      user, the venv and starting services are skipped and listed
  --dry-run           print what would change; change nothing
  --bundle DIR        model bundle folder (manifest.json + .tflite) to install
                      (default: <repo>/models/default)
  --bundle-name NAME  install it as $ATELIER_MODELS/NAME and serve it (default: default)
  --camera URI        camera for the config: v4l2:///dev/..., file:///..., synthetic://
                      (default: v4l2:///dev/atelier-camera, the udev name)
  --wheel FILE        install the app from this wheel (default: build it from the repo checkout)
  --wheelhouse DIR    install offline: pip takes every package from DIR (pip download / pip wheel output)
  --python PATH       Python 3.11+ to create the venv with (default: python3)
  --skip-packages     do not apt-get install the system packages
  --skip-venv         do not create or update the venv
  --no-start          enable the services but do not (re)start them
  --force-config      rewrite $ATELIER_CONFIG from scratch (the old one is kept as kiosk.toml.bak);
                      by default an existing config keeps its edits and only hardware/delegate are updated
                      (and bundle/camera when --bundle, --bundle-name or --camera is given)
  -h, --help          show this help

Steps: $(cd "$FIRMWARE_DIR/steps" && printf '%s ' [0-9][0-9]-*.sh)
EOF
}

# ---- options (read by the steps, which provision.sh sources) ----
# shellcheck disable=SC2034
{
  BUNDLE_DIR=""
  BUNDLE_NAME=default
  BUNDLE_GIVEN=0    # 1 when --bundle or --bundle-name was given: the config's bundle key follows it
  CAMERA_URI=v4l2:///dev/atelier-camera
  CAMERA_GIVEN=0
  WHEEL=""
  WHEELHOUSE=""
  PYTHON=python3
  SKIP_PACKAGES=0
  SKIP_VENV=0
  NO_START=0
  FORCE_CONFIG=0

  # What the system-files step changed, for the enable step (reloads only what changed).
  UNITS_CHANGED=0
  UDEV_CHANGED=0
  JOURNALD_CHANGED=0
}

# shellcheck disable=SC2034  # the options are read by the steps
parse_args() {
  while (($#)); do
    case $1 in
      --root)
        need_value "$@"
        set_root "$2"
        shift 2
        ;;
      --dry-run) DRY_RUN=1 && shift ;;
      --bundle)
        need_value "$@"
        BUNDLE_DIR=$2 BUNDLE_GIVEN=1
        shift 2
        ;;
      --bundle-name)
        need_value "$@"
        BUNDLE_NAME=$2 BUNDLE_GIVEN=1
        shift 2
        ;;
      --camera)
        need_value "$@"
        CAMERA_URI=$2 CAMERA_GIVEN=1
        shift 2
        ;;
      --wheel)
        need_value "$@"
        WHEEL=$2
        shift 2
        ;;
      --wheelhouse)
        need_value "$@"
        WHEELHOUSE=$2
        shift 2
        ;;
      --python)
        need_value "$@"
        PYTHON=$2
        shift 2
        ;;
      --skip-packages) SKIP_PACKAGES=1 && shift ;;
      --skip-venv) SKIP_VENV=1 && shift ;;
      --no-start) NO_START=1 && shift ;;
      --force-config) FORCE_CONFIG=1 && shift ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $1" ;;
    esac
  done
}

# preflight: check every input before the first change, so a typo never leaves a half-provisioned box.
preflight() {
  valid_name "$BUNDLE_NAME" ||
    usage_error "--bundle-name '$BUNDLE_NAME' must be letters, digits, '.', '_' or '-' (not starting with '.')"
  if [[ ! $CAMERA_URI =~ ^(v4l2:///dev/[A-Za-z0-9._/-]+|file:///[^\"\\[:space:]]+|synthetic://[A-Za-z0-9._-]*)$ ||
    $CAMERA_URI == v4l2://*..* ]]; then
    usage_error "--camera '$CAMERA_URI' is not v4l2:///dev/NAME, file:///PATH or synthetic://"
  fi

  if [[ -z $BUNDLE_DIR && -n $REPO_DIR ]]; then
    BUNDLE_DIR=$REPO_DIR/models/default
  fi
  if [[ -n $BUNDLE_DIR ]]; then
    if [[ ! -d $BUNDLE_DIR ]]; then
      if ((BUNDLE_GIVEN)) || [[ ! -d $(at "$ATELIER_MODELS/$BUNDLE_NAME") ]]; then
        die "no model bundle at $BUNDLE_DIR: pass --bundle DIR (a folder with manifest.json and a .tflite model)"
      fi
      log "note: $BUNDLE_DIR does not exist; keeping the installed bundle '$BUNDLE_NAME'"
      BUNDLE_DIR=""
    else
      BUNDLE_DIR=$(realpath -- "$BUNDLE_DIR")
      check_bundle "$BUNDLE_DIR"
    fi
  elif [[ ! -d $(at "$ATELIER_MODELS/$BUNDLE_NAME") ]]; then
    die "no model bundle to install: pass --bundle DIR (a folder with manifest.json and a .tflite model)"
  fi

  if [[ -n $WHEEL ]]; then
    [[ -f $WHEEL && $WHEEL == *.whl ]] || die "--wheel $WHEEL is not a .whl file"
    WHEEL=$(realpath -- "$WHEEL")
  fi
  if [[ -n $WHEELHOUSE ]]; then
    [[ -d $WHEELHOUSE ]] || die "--wheelhouse $WHEELHOUSE is not a folder"
    WHEELHOUSE=$(realpath -- "$WHEELHOUSE")
  fi
  if live_system && ((!SKIP_VENV)); then
    if [[ -z $WHEEL && -z $REPO_DIR && ! -x $ATELIER_VENV/bin/atelier ]]; then
      die "nothing to install the app from: pass --wheel FILE, or run provision.sh from the repo checkout"
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "--python $PYTHON not found"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "$PYTHON is $("$PYTHON" -V 2>&1); Atelier needs Python 3.11+: install one and pass --python PATH"
  fi
  require_root_user
}

# check_bundle DIR: a bundle is a folder with manifest.json and at least one .tflite model, and nothing but plain
# files and folders (a symlink could smuggle any file of the box into the models folder).
check_bundle() {
  local dir=$1 odd models
  [[ -s $dir/manifest.json ]] || die "$dir is not a model bundle: it has no manifest.json"
  models=$(find "$dir" -maxdepth 1 -type f -name '*.tflite' | head -n 1)
  [[ -n $models ]] || die "$dir is not a model bundle: it has no .tflite model"
  odd=$(find "$dir" ! -type f ! -type d | head -n 1)
  [[ -z $odd ]] || die "model bundle $dir holds $odd, which is not a plain file; copy the real files in"
}

main() {
  parse_args "$@"
  preflight
  local where=/ mode=""
  live_system || where=$ROOT
  ((!DRY_RUN)) || mode=" (dry run: nothing is changed)"
  log "Provisioning an Atelier kiosk into $where$mode"
  local step
  for step in "$FIRMWARE_DIR"/steps/[0-9][0-9]-*.sh; do
    log "== ${step##*/}"
    # shellcheck source=/dev/null
    source "$step"
  done
  if ((CHANGES == 0)); then
    log "Done: nothing to change, this kiosk is already provisioned."
  elif ((DRY_RUN)); then
    log "Dry run: $CHANGES change(s) would be made; nothing was changed."
  else
    log "Done: $CHANGES change(s)."
  fi
}

main "$@"
