# Shared helpers for the regression tests (sourced by each test script).
# The runner exports: RMAPFS (the command), SCRATCH_DEV (image), SCRATCH_MNT
# (mounted before the test starts), TEST_DIR (this folder), TMP (scratch dir).

_fail() {
  echo "FAIL: $*"
  exit 1
}

# Replaces what varies between runs with fixed words.
_filter() {
  sed -e "s|$SCRATCH_MNT|SCRATCH_MNT|g" -e "s|$SCRATCH_DEV|SCRATCH_DEV|g" -e "s|$TMP|TMP|g"
}

_scratch_unmount() {
  "$RMAPFS" umount "$SCRATCH_MNT" || _fail "umount failed"
}

_scratch_mount() {
  "$RMAPFS" mount "$@" "$SCRATCH_DEV" "$SCRATCH_MNT" || _fail "mount failed"
}

_scratch_cycle() {
  _scratch_unmount
  _scratch_mount "$@"
}

# The errno text of a failing command (its last line, after the last ": "), or "ok".
_try() {
  local out
  if out=$("$@" 2>&1); then echo ok; else echo "$out" | tail -1 | sed -e 's/^.*: //'; fi
}

# rename(2) itself, without mv's own checks: prints the errno text or "ok".
_rename() {
  python3 -c 'import os, sys
try:
    os.rename(sys.argv[1], sys.argv[2]); print("ok")
except OSError as e:
    print(e.strerror)' "$1" "$2"
}
