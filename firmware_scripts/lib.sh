# shellcheck shell=bash
# Shared helpers for the Atelier firmware scripts: sourced by provision.sh, its steps, detect_hardware.sh,
# healthcheck.sh, browser.sh and uninstall.sh; never run on its own.
#
# Every path below is the path on the kiosk. With --root DIR the same layout is laid down under DIR (a staging
# tree or an image being built); `at PATH` turns a kiosk path into the path to touch.

# Sourced by several scripts that also source one another: load once, so sourcing never resets the state below.
if [[ -n ${_ATELIER_LIB_LOADED:-} ]]; then
  return 0
fi
_ATELIER_LIB_LOADED=1

# ---- the install layout (fixed: the units, rules and the kiosk config name these paths) -----------------------
# shellcheck disable=SC2034  # read by the scripts that source this file
{
  ATELIER_USER=atelier
  ATELIER_PREFIX=/opt/atelier                 # the app: venv/ and a copy of these scripts in firmware/
  ATELIER_VENV=/opt/atelier/venv
  ATELIER_FIRMWARE=/opt/atelier/firmware
  ATELIER_ETC=/etc/atelier
  ATELIER_CONFIG=/etc/atelier/kiosk.toml
  ATELIER_DATA=/var/lib/atelier               # the writable data partition on a read-only-root kiosk
  ATELIER_MODELS=/var/lib/atelier/models
  ATELIER_CAPTURES=/var/lib/atelier/captures
  ATELIER_BROWSER_DATA=/var/lib/atelier/browser
  SYSTEMD_UNIT_DIR=/etc/systemd/system
  UDEV_RULES_DIR=/etc/udev/rules.d
  JOURNALD_DROPIN_DIR=/etc/systemd/journald.conf.d
  PAM_DIR=/etc/pam.d
  ATELIER_UNITS=(atelier-kiosk.service atelier-browser.service)
}

# ---- state shared by the scripts ---------------------------------------------------------------------------------
ROOT=""      # staging root without a trailing slash; "" means the live system
DRY_RUN=0    # 1: print what would change, change nothing
CHANGES=0    # how many files/dirs/links this run created, replaced or removed

# ---- messages ----------------------------------------------------------------------------------------------------
log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# usage_error MESSAGE: for bad command lines; the calling script defines usage(). Exit status 2, like argparse.
usage_error() {
  printf '%s: %s\n' "${PROG:-${0##*/}}" "$1" >&2
  usage >&2
  exit 2
}

# need_value FLAG "$@": fail with usage unless FLAG is followed by a value (not empty, not another --flag).
need_value() {
  local flag=$1
  shift
  if (($# < 1)) || [[ -z $1 || $1 == --* ]]; then
    usage_error "$flag needs a value"
  fi
}

# quoted CMD...: the command as one shell-quoted line, for logs and --dry-run.
quoted() {
  local out
  printf -v out '%q ' "$@"
  printf '%s' "${out% }"
}

# ---- the staging root ----------------------------------------------------------------------------------------------
# set_root DIR: install under DIR instead of /. DIR is made absolute; "/" means the live system.
set_root() {
  local dir=$1
  [[ -n $dir ]] || usage_error "--root needs a directory"
  dir=$(realpath -m -- "$dir")
  if [[ $dir == / ]]; then
    ROOT=""
    return
  fi
  if [[ -e $dir && ! -d $dir ]]; then
    die "--root $dir exists and is not a directory"
  fi
  ROOT=$dir
}

# at PATH: where the kiosk path PATH lives on this machine (under the staging root when there is one).
at() { printf '%s%s' "$ROOT" "$1"; }

live_system() { [[ -z $ROOT ]]; }

# require_root_user: a live, non-dry run changes the system and needs root.
require_root_user() {
  if live_system && ((!DRY_RUN)) && ((EUID != 0)); then
    die "run this as root (sudo $PROG ...); use --dry-run to preview, or --root DIR to stage into a folder"
  fi
}

# note_change WHAT: count one change and say it (as "would ..." under --dry-run).
note_change() {
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then
    log "  would $*"
  else
    log "  $*"
  fi
}

# host_cmd CMD...: a command that changes the live system (apt-get, useradd, systemctl, pip). Skipped under
# --root (the host is not the kiosk), printed under --dry-run, otherwise run.
host_cmd() {
  if ! live_system; then
    log "  skip (--root): $(quoted "$@")"
    return 0
  fi
  if ((DRY_RUN)); then
    log "  would run: $(quoted "$@")"
    return 0
  fi
  log "  run: $(quoted "$@")"
  "$@"
}

# ---- idempotent file operations (a second run changes nothing) ----------------------------------------------------
_mode_of() { stat -c '%a' -- "$1"; }
_same_mode() { (("8#$(_mode_of "$1")" == "8#$2")); }

# install_dir PATH MODE [OWNER]: create the directory if missing and set its mode; OWNER (user:group) is applied
# on the live system only (the staging host has no such user).
install_dir() {
  local path=$1 mode=$2 owner=${3:-} target
  target=$(at "$path")
  if [[ -L $target || (-e $target && ! -d $target) ]]; then
    die "$target exists and is not a directory; move it away and run again"
  fi
  if [[ ! -d $target ]]; then
    note_change "create $path/ (mode $mode)"
    ((DRY_RUN)) || install -d -m "$mode" -- "$target"
  elif ! _same_mode "$target" "$mode"; then
    note_change "chmod $mode $path/"
    ((DRY_RUN)) || chmod "$mode" -- "$target"
  fi
  _own "$path" "$owner"
}

# _own PATH USER:GROUP: chown on the live system when the owner differs and the user exists.
_own() {
  local path=$1 owner=$2 target
  [[ -n $owner ]] && live_system || return 0
  target=$(at "$path")
  if ! id -u "${owner%%:*}" >/dev/null 2>&1; then
    ((DRY_RUN)) && return 0  # the user step would have created it
    die "user ${owner%%:*} does not exist (the user step creates it)"
  fi
  [[ -e $target ]] || return 0  # only under --dry-run: not created
  if [[ $(stat -c '%U:%G' -- "$target") != "$owner" ]]; then
    note_change "chown $owner $path"
    ((DRY_RUN)) || chown "$owner" -- "$target"
  fi
}

# install_file SRC DEST MODE [OWNER]: put SRC's content at DEST with MODE, writing only when the content or mode
# differs (atomically: a temp file in the same folder, then rename), so units and rules never appear half-written.
install_file() {
  local src=$1 dest=$2 mode=$3 owner=${4:-} target dir tmp
  target=$(at "$dest")
  [[ -f $src ]] || die "missing source file $src (is the firmware_scripts folder complete?)"
  if [[ -f $target && ! -L $target ]] && cmp -s -- "$src" "$target"; then
    if ! _same_mode "$target" "$mode"; then
      note_change "chmod $mode $dest"
      ((DRY_RUN)) || chmod "$mode" -- "$target"
    fi
  else
    if [[ -e $target || -L $target ]]; then
      note_change "update $dest"
    else
      note_change "install $dest"
    fi
    if ((!DRY_RUN)); then
      dir=$(dirname -- "$target")
      mkdir -p -- "$dir"
      tmp=$(mktemp "$dir/.atelier-tmp.XXXXXX")
      cp -- "$src" "$tmp"
      chmod "$mode" -- "$tmp"
      mv -f -- "$tmp" "$target"
    fi
  fi
  _own "$dest" "$owner"
}

# install_text DEST MODE [OWNER] < CONTENT: like install_file, the content read from standard input.
install_text() {
  local tmp status=0
  tmp=$(mktemp)
  cat >"$tmp"
  install_file "$tmp" "$@" || status=$?
  rm -f -- "$tmp"
  return "$status"
}

# install_symlink TARGET LINK: LINK -> TARGET (TARGET is a kiosk path, as systemctl enable writes it).
install_symlink() {
  local target=$1 link=$2 where
  where=$(at "$link")
  if [[ -L $where && $(readlink -- "$where") == "$target" ]]; then
    return 0
  fi
  if [[ -e $where && ! -L $where ]]; then
    die "$where exists and is not a symlink; move it away and run again"
  fi
  note_change "link $link -> $target"
  if ((!DRY_RUN)); then
    mkdir -p -- "$(dirname -- "$where")"
    ln -sfn -- "$target" "$where"
  fi
}

# remove_path PATH: delete a file, link or folder (recursively) if it exists.
remove_path() {
  local path=$1 target
  target=$(at "$path")
  if [[ -e $target || -L $target ]]; then
    note_change "remove $path"
    ((DRY_RUN)) || rm -rf -- "$target"
  fi
}

# ---- the kiosk config (flat TOML: `key = value` lines, comments on their own lines) ------------------------------
# toml_get KEY FILE: the value of a top-level KEY (quotes stripped), or nothing.
toml_get() {
  local key=$1 file=$2
  [[ -r $file ]] || return 0
  sed -n -E "s/^[[:space:]]*${key}[[:space:]]*=[[:space:]]*(\"([^\"]*)\"|([^#[:space:]]*)).*$/\\2\\3/p" \
    -- "$file" | head -n 1
}

# kiosk_base_url CONFIG: http://HOST:PORT/ of the kiosk server from its config (defaults 127.0.0.1:8000; a
# wildcard bind address is reached on loopback).
kiosk_base_url() {
  local host port
  host=$(toml_get host "$1")
  port=$(toml_get port "$1")
  if [[ -z $host || $host == 0.0.0.0 ]]; then
    host=127.0.0.1
  fi
  printf 'http://%s:%s/' "$host" "${port:-8000}"
}

# toml_string VALUE: VALUE as a TOML basic string (the values we write are paths and names; refuse odd ones).
toml_string() {
  local value=$1
  if [[ $value == *[\"\\]* || $value == *$'\n'* ]]; then
    die "refusing to write $value into the config: quotes, backslashes and newlines are not allowed"
  fi
  printf '"%s"' "$value"
}

# toml_set KEY RAW_VALUE < FILE > NEW: replace the KEY line (or append one), keeping every other line as it is.
toml_set() {
  local key=$1 value=$2
  awk -v key="$key" -v value="$value" '
    BEGIN { done = 0; pattern = "^[ \t]*" key "[ \t]*=" }
    $0 ~ pattern && !done { print key " = " value; done = 1; next }
    { print }
    END { if (!done) print key " = " value }
  '
}

# valid_name NAME: a bundle name safe to use as one path component.
valid_name() { [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; }
