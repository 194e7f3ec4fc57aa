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

# ---- stress and bad-input helpers (tests 020-029) ----

# fsstress (test/stress/fsstress.ts): N processes of random operations, each
# with a model of its files; --verify compares, --manifest keeps the model.
FSSTRESS=${FSSTRESS:-$TEST_DIR/../../dist/test/stress/fsstress.js}
_fsstress() {
  node "$FSSTRESS" "$@"
}

# A line for the record, not for the golden output: appended to TMP/stress.log
# and, when STRESS_LOG is set, to that file too (it outlives the test's TMP).
_stress_log() {
  echo "$*" >> "$TMP/stress.log"
  if [ -n "${STRESS_LOG:-}" ]; then echo "$(date +%FT%T) ${0##*/}: $*" >> "$STRESS_LOG"; fi
  return 0
}

# Runs as the unprivileged user nobody.
_as_nobody() {
  setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

# A command that must fail cleanly. Prints "LABEL: MESSAGE (exit N)", MESSAGE
# being its one error line without the "rmapfs...: " prefix (stderr, or
# stdout when stderr is empty); says so instead when it succeeds, prints more
# than one error line, or shows a stack trace.
_bad() {
  local label=$1 rc msg lines
  shift
  "$@" > "$TMP/_bad.out" 2> "$TMP/_bad.err"
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "$label: SUCCEEDED (exit 0)"
    return
  fi
  if grep -q '^    at ' "$TMP/_bad.err" "$TMP/_bad.out"; then
    echo "$label: STACK TRACE (exit $rc): $(head -1 "$TMP/_bad.err")"
    return
  fi
  if [ -s "$TMP/_bad.err" ]; then msg=$TMP/_bad.err; else msg=$TMP/_bad.out; fi
  lines=$(grep -c '' "$msg")
  if [ "$lines" -ne 1 ]; then
    echo "$label: $lines LINES (exit $rc): $(head -1 "$msg")"
    return
  fi
  echo "$label: $(sed -e 's/^rmapfs[^:]*: //' "$msg") (exit $rc)"
}
