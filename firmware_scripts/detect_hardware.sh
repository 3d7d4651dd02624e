#!/usr/bin/env bash
# Detect the kiosk hardware (Jetson, Coral Dev Board, Coral USB Accelerator, or a generic Linux box) and the
# inference delegate to use, and optionally write both into the kiosk config.
#
# Everything is read from files (no lsusb, no lspci), so a staging root with a few fake files is enough to test it:
#   Jetson            /etc/nv_tegra_release (written by NVIDIA's L4T BSP)
#   Coral Dev Board   /proc/device-tree/model naming the board (i.MX8MQ "Phanbell", or "Coral")
#   Edge TPU, PCIe    /dev/apex_0 (the gasket/apex driver: the Dev Board's own TPU, or an M.2 / Mini PCIe card)
#   Edge TPU, USB     /sys/bus/usb/devices/*/idVendor:idProduct 1a6e:089a (before its firmware is loaded) or
#                     18d1:9302 (after)
#   Edge TPU runtime  libedgetpu.so.1 in the linker cache or the usual library folders
# The delegate is "edgetpu" only when an Edge TPU is present AND its runtime is installed; otherwise "cpu".
# Jetson stays on "cpu": the TFLite GPU delegate needs OpenCL, which Jetson lacks (its GPU path is TensorRT).
set -euo pipefail

PROG=${0##*/}
# shellcheck source=lib.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--root DIR] [--write] [--config FILE] [--dry-run]

Detect the kiosk hardware and print it as hardware=... and delegate=... lines.

  --root DIR     look at (and write into) the system staged under DIR instead of /
  --write        write hardware and delegate into the kiosk config (other settings are kept)
  --config FILE  the kiosk config, a path on the kiosk (default: $ATELIER_CONFIG)
  --dry-run      with --write: say what would change, change nothing
  -h, --help     show this help

hardware: jetson | coral-devboard | coral-usb | generic      delegate: edgetpu | cpu
EOF
}

EDGETPU_USB_IDS=("1a6e:089a" "18d1:9302")

# Results of detect_hardware.
HW_HARDWARE=generic
HW_DELEGATE=cpu
HW_EDGETPU=""      # "pcie", "usb" or "" (none found)
HW_LIBEDGETPU=""   # where the Edge TPU runtime was found, or ""

_board_model() {
  local model_file
  model_file=$(at /proc/device-tree/model)
  [[ -r $model_file ]] || return 0
  tr -d '\0' <"$model_file"
}

_edgetpu_usb_present() {
  local dev id wanted
  for dev in "$(at /sys/bus/usb/devices)"/*; do
    [[ -r $dev/idVendor && -r $dev/idProduct ]] || continue
    id="$(<"$dev/idVendor"):$(<"$dev/idProduct")"
    for wanted in "${EDGETPU_USB_IDS[@]}"; do
      [[ ${id,,} == "$wanted" ]] && return 0
    done
  done
  return 1
}

_find_libedgetpu() {
  local candidate
  if live_system && command -v ldconfig >/dev/null 2>&1; then
    candidate=$(ldconfig -p 2>/dev/null | awk '/libedgetpu\.so\.1/ { print $NF; exit }')
    if [[ -n $candidate ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  fi
  for candidate in "$(at /usr/lib)"/*/libedgetpu.so.1* "$(at /usr/lib)"/libedgetpu.so.1* \
    "$(at /usr/local/lib)"/libedgetpu.so.1* "$(at /usr/local/lib)"/*/libedgetpu.so.1*; do
    if [[ -e $candidate ]]; then
      printf '%s' "${candidate#"$ROOT"}"
      return 0
    fi
  done
}

# detect_hardware: fill HW_HARDWARE, HW_DELEGATE, HW_EDGETPU and HW_LIBEDGETPU from the (staged) system.
detect_hardware() {
  local model apex
  model=$(_board_model)
  HW_EDGETPU=""
  for apex in "$(at /dev)"/apex_*; do
    if [[ -e $apex ]]; then
      HW_EDGETPU=pcie
      break
    fi
  done
  if [[ -z $HW_EDGETPU ]] && _edgetpu_usb_present; then
    HW_EDGETPU=usb
  fi
  HW_LIBEDGETPU=$(_find_libedgetpu)

  if [[ -f $(at /etc/nv_tegra_release) ]]; then
    HW_HARDWARE=jetson
  elif [[ ${model,,} == *phanbell* || ${model,,} == *coral* ]]; then
    HW_HARDWARE=coral-devboard
  elif [[ $HW_EDGETPU == usb ]]; then
    HW_HARDWARE=coral-usb
  else
    HW_HARDWARE=generic  # also a PC with an M.2 / Mini PCIe Edge TPU: the delegate below still says edgetpu
  fi

  HW_DELEGATE=cpu
  if [[ -n $HW_EDGETPU && -n $HW_LIBEDGETPU ]]; then
    HW_DELEGATE=edgetpu
  elif [[ -n $HW_EDGETPU ]]; then
    warn "an Edge TPU ($HW_EDGETPU) is present but its runtime libedgetpu.so.1 is not installed: using the CPU." \
      "Install Coral's libedgetpu1-std package (see firmware_scripts/README.md) and run this again."
  elif [[ $HW_HARDWARE == coral-devboard ]]; then
    warn "Coral Dev Board without /dev/apex_0: the apex driver is not loaded; using the CPU."
  fi
}

# write_hardware_config CONFIG: set hardware and delegate in the (staged) config, keeping everything else.
write_hardware_config() {
  local config=$1 target new status=0
  target=$(at "$config")
  [[ -f $target ]] || die "no kiosk config at $target: run provision.sh first (it writes one)"
  new=$(mktemp)
  toml_set hardware "$(toml_string "$HW_HARDWARE")" <"$target" |
    toml_set delegate "$(toml_string "$HW_DELEGATE")" >"$new"
  install_file "$new" "$config" "$(stat -c '%a' -- "$target")" "root:$ATELIER_USER" || status=$?
  rm -f -- "$new"
  return "$status"
}

main() {
  local write=0 config=$ATELIER_CONFIG
  while (($#)); do
    case $1 in
      --root)
        need_value "$@"
        set_root "$2"
        shift 2
        ;;
      --write) write=1 && shift ;;
      --config)
        need_value "$@"
        config=$2
        shift 2
        ;;
      --dry-run) DRY_RUN=1 && shift ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $1" ;;
    esac
  done
  [[ $config == /* ]] || usage_error "--config wants an absolute path on the kiosk, got $config"
  if ! live_system && [[ ! -d $ROOT ]]; then
    die "--root $ROOT does not exist"
  fi
  detect_hardware
  printf 'hardware=%s\ndelegate=%s\n' "$HW_HARDWARE" "$HW_DELEGATE"
  if ((write)); then
    require_root_user
    write_hardware_config "$config" >&2
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
