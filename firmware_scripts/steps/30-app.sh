# shellcheck shell=bash
# Step 30: the app under /opt/atelier: a copy of these firmware scripts (the units run healthcheck.sh and
# browser.sh from it, and uninstall.sh is there when the repo is not), and the venv with the `atelier` command.

# install_firmware_copy: mirror FIRMWARE_DIR into /opt/atelier/firmware (executables 0755, the rest 0644) and
# drop files that are no longer shipped.
install_firmware_copy() {
  local rel mode installed_root rel_installed
  local -A shipped=()
  install_dir "$ATELIER_PREFIX" 0755
  install_dir "$ATELIER_FIRMWARE" 0755
  while IFS= read -r -d '' rel; do
    rel=${rel#./}
    shipped[$rel]=1
    mode=0644
    [[ -x $FIRMWARE_DIR/$rel ]] && mode=0755
    install_file "$FIRMWARE_DIR/$rel" "$ATELIER_FIRMWARE/$rel" "$mode"
  done < <(cd "$FIRMWARE_DIR" && find . -type f ! -name '*.sw?' ! -name '*~' ! -path '*/__pycache__/*' -print0 |
    sort -z)
  installed_root=$(at "$ATELIER_FIRMWARE")
  [[ -d $installed_root ]] || return 0  # only under --dry-run
  while IFS= read -r -d '' rel_installed; do
    rel_installed=${rel_installed#./}
    if [[ -z ${shipped[$rel_installed]:-} ]]; then
      remove_path "$ATELIER_FIRMWARE/$rel_installed"
    fi
  done < <(cd "$installed_root" && find . -type f -print0)
}

# app_source_stamp: what the venv gets installed from, as one line; the venv is updated only when it changes.
# For the repo it is a hash of what goes into the wheel (the packages, the C++ sources, the build files).
app_source_stamp() {
  if [[ -n $WHEEL ]]; then
    printf 'wheel %s %s\n' "${WHEEL##*/}" "$(sha256sum -- "$WHEEL" | cut -d' ' -f1)"
    return 0
  fi
  local sources=() item
  for item in pyproject.toml CMakeLists.txt README.md atelier edge trainer csrc; do
    [[ -e $REPO_DIR/$item ]] && sources+=("$item")
  done
  printf 'repo %s\n' "$(
    cd "$REPO_DIR" &&
      find "${sources[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z |
      xargs -0 sha256sum | sha256sum | cut -d' ' -f1
  )"
}

install_venv() {
  local pip_opts=() stamp stamp_file
  if ((SKIP_VENV)); then
    log "  skip (--skip-venv): the venv in $ATELIER_VENV"
    return 0
  fi
  if ! live_system; then
    log "  skip (--root): $PYTHON -m venv $ATELIER_VENV and pip install of the app (pip needs the box itself)"
    return 0
  fi
  if [[ -z $WHEEL && -z $REPO_DIR ]]; then
    log "  app already installed in $ATELIER_VENV (pass --wheel FILE to upgrade it)"
    return 0
  fi
  [[ -n $WHEELHOUSE ]] && pip_opts=(--no-index --find-links "$WHEELHOUSE")
  stamp=$(app_source_stamp)
  stamp_file=$ATELIER_VENV/.atelier-installed-from
  if [[ -x $ATELIER_VENV/bin/atelier && -f $stamp_file && $(<"$stamp_file") == "$stamp" ]]; then
    log "  app in $ATELIER_VENV is up to date (${stamp%% *})"
    return 0
  fi
  CHANGES=$((CHANGES + 1))
  if [[ ! -x $ATELIER_VENV/bin/python ]]; then
    host_cmd "$PYTHON" -m venv "$ATELIER_VENV"
  fi
  if [[ -n $WHEEL ]]; then
    host_cmd "$ATELIER_VENV/bin/pip" install -q "${pip_opts[@]}" "$WHEEL"
    # Same version number, new build: replace the package itself too.
    host_cmd "$ATELIER_VENV/bin/pip" install -q --force-reinstall --no-deps "${pip_opts[@]}" "$WHEEL"
  else
    host_cmd "$ATELIER_VENV/bin/pip" install -q "${pip_opts[@]}" "$REPO_DIR"
  fi
  host_cmd "$ATELIER_VENV/bin/atelier" --version
  if ((!DRY_RUN)); then
    printf '%s\n' "$stamp" >"$stamp_file"
  fi
}

install_firmware_copy
install_venv
