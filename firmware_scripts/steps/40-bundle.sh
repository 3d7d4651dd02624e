# shellcheck shell=bash
# Step 40: the data folders and the model bundle. /var/lib/atelier is the writable data partition on a read-only
# root: models/ (bundles; the kiosk watches it), captures/ (photos for the next fine-tune), browser/ (profile).

# install_bundle SRC NAME: copy the bundle to models/NAME when it differs. The copy is built beside the target
# under a dot-name and renamed into place, so the kiosk's watcher never sees half a bundle.
install_bundle() {
  local src=$1 name=$2 dest target incoming old
  dest=$ATELIER_MODELS/$name
  target=$(at "$dest")
  if [[ -d $target ]] && diff -r -q -- "$src" "$target" >/dev/null 2>&1; then
    log "  bundle $name is up to date"
    return 0
  fi
  note_change "install bundle $src as $dest"
  ((!DRY_RUN)) || return 0
  incoming=$(at "$ATELIER_MODELS/.$name.incoming")
  old=$(at "$ATELIER_MODELS/.$name.old")
  rm -rf -- "$incoming" "$old"
  cp -R --no-preserve=ownership -- "$src" "$incoming"
  chmod -R u=rwX,go=rX -- "$incoming"
  if [[ -e $target ]]; then
    mv -- "$target" "$old"
  fi
  mv -- "$incoming" "$target"
  rm -rf -- "$old"
}

step_bundle() {
  local owner=$ATELIER_USER:$ATELIER_USER
  install_dir "$ATELIER_DATA" 0750 "$owner"
  install_dir "$ATELIER_MODELS" 0750 "$owner"
  install_dir "$ATELIER_CAPTURES" 0750 "$owner"
  install_dir "$ATELIER_BROWSER_DATA" 0700 "$owner"
  if [[ -n $BUNDLE_DIR ]]; then
    install_bundle "$BUNDLE_DIR" "$BUNDLE_NAME"
  else
    log "  keeping the installed bundle $BUNDLE_NAME"
  fi
}

step_bundle
