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

# ---- rmap damage and repair (tests 013 and up) ---------------------------------------

# Replaces every number but an AG's with N: block and inode numbers depend on allocation.
# The commands' summary lines ("rmapfs scrub: 3 problems in 4 AGs") keep theirs.
_filter_numbers() {
  perl -pe 's/(?<!AG )(?<!\w)(?<!\d\.)\d+(?!\w)(?!\.\d)/N/g unless /^rmapfs /'
}

# Fills the mounted scratch filesystem with N small files (default 800) of random data in
# SCRATCH_MNT/data: a record each, so every AG's rmap btree grows a second level. Their
# checksums go to $TMP/sums.
_populate_rmap() {
  local n=${1:-800} i
  mkdir -p "$SCRATCH_MNT/data"
  for i in $(seq 1 "$n"); do head -c $(( (i % 7 + 1) * 600 )) /dev/urandom > "$SCRATCH_MNT/data/f$i"; done
  (cd "$SCRATCH_MNT/data" && md5sum f* | sort) > "$TMP/sums"
}

_files_unchanged() {
  if (cd "$SCRATCH_MNT/data" && md5sum f* | sort) | cmp -s - "$TMP/sums"; then echo "files unchanged"; else echo "FILES CHANGED"; fi
}

# Field $2 of what `rmapfs db DEV "$1"` prints ("name = value" lines).
_db_field() {
  "$RMAPFS" db "$SCRATCH_DEV" "$1" | awk -v f="$2" '$1 == f {print $3}'
}

# The blocks of AG $1's rmap btree at level $2 (0: the leaves), left to right.
_rmap_blocks() {
  "$RMAPFS" db "$SCRATCH_DEV" "btree $1 rmap" \
    | awk -v l="level $2:" '/^level / {on = (index($0, l) == 1); next} on && $1 == "block" {sub(":", "", $2); print $2}'
}

# The records of rmap leaf $2 of AG $1, one a line: "INDEX STARTBLOCK BLOCKCOUNT OWNER OFFSET [FLAGS]".
_rmap_recs() {
  "$RMAPFS" db "$SCRATCH_DEV" "block $1 rmap $2" \
    | sed -nE 's/^rec\[([0-9]+)\] = \[([0-9]+)\+([0-9]+)\] owner ([0-9]+) offset ([0-9]+)(.*)$/\1 \2 \3 \4 \5\6/p'
}

# Index of a record of rmap leaf $2 of AG $1, at $3 or after, that maps plain file data (no
# flags) and is followed by another such record.
_rmap_file_rec() {
  _rmap_recs "$1" "$2" | awk -v from="${3:-0}" '
    NF == 5 && $4 >= 16 { if (prev != "" && prev + 1 == $1 && prev >= from) { print prev; exit } prev = $1; next }
    { prev = "" }'
}

# Runs `rmapfs db` on the scratch device, showing what it did without numbers.
_db() {
  "$RMAPFS" db "$SCRATCH_DEV" "$@" | _filter_numbers
  [ "${PIPESTATUS[0]}" -eq 0 ] || _fail "db $* failed"
}

_check_status() {
  "$RMAPFS" check "$SCRATCH_DEV" > "$TMP/check.out" 2>&1
  echo "check: exit $?"
}

# Scrub of the live mount: its problems (numbers filtered) and its exit status.
_scrub_report() {
  "$RMAPFS" scrub "$SCRATCH_MNT" > "$TMP/scrub.out" 2>&1
  local status=$?
  grep -v '^rmapfs scrub: clean' "$TMP/scrub.out" | _filter_numbers
  echo "scrub: exit $status"
}

# Online repair; its last line (the verdict) and exit status.
_repair_report() {
  "$RMAPFS" repair "$@" "$SCRATCH_MNT" > "$TMP/repair.out" 2>&1
  local status=$?
  tail -1 "$TMP/repair.out"
  echo "repair: exit $status"
}

# The leaf of AG $1's rmap btree holding the most records (taking one out keeps it above half full).
_rmap_fullest_leaf() {
  local b
  for b in $(_rmap_blocks "$1" 0); do echo "$(_rmap_recs "$1" "$b" | wc -l) $b"; done | sort -n | tail -1 | cut -d' ' -f2
}

# ---- stress and bad-input helpers (tests 020-029) ----

# fsstress (test/stress/fsstress.ts): N processes of random operations, each
# with a model of its files; --verify compares, --manifest keeps the model.
FSSTRESS=${FSSTRESS:-$TEST_DIR/../../dist/test/stress/fsstress.js}
_fsstress() {
  node "$FSSTRESS" "$@"
}

# fsx, the data checker of one file (test/stress/fsx.ts); its repair count varies, so it is filtered.
FSX=${FSX:-$TEST_DIR/../../dist/test/stress/fsx.js}
_fsx() {
  local out st
  out=$(node "$FSX" "$@"); st=$?
  _stress_log "$out" # with the number of repairs, which the golden output cannot hold
  echo "$out" | sed -E 's/; [1-9][0-9]* repairs beside/; N repairs beside/'
  return "$st"
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

# ---- damage outside the rmap (tests 060-064) ----

# The lines of `rmapfs status` about damaged structures, times and numbers filtered, then its exit status.
_status_damage() {
  "$RMAPFS" status "$SCRATCH_MNT" > "$TMP/status.out" 2>&1
  local status=$?
  awk '/^damaged / {on = 1} on' "$TMP/status.out" | sed -E -e 's/ at [0-9T:.-]+Z / at TIME /' -e 's/ +$//' | _filter_numbers
  echo "status: exit $status"
}

# Creates N directories (named PREFIX1.., default d1..; a prefix starting with d for a second batch),
# each with a file of known content (directories spread over the AGs, the files go near them); says how
# many of the 2N creations succeeded. The checksums of every batch so far go to $TMP/new-sums.
_create_many() {
  local n=$1 prefix=${2:-d} i ok=0
  mkdir -p "$SCRATCH_MNT/new"
  for i in $(seq 1 "$n"); do
    mkdir "$SCRATCH_MNT/new/$prefix$i" 2>/dev/null && ok=$((ok + 1))
    echo "file $i" > "$SCRATCH_MNT/new/$prefix$i/f" 2>/dev/null && ok=$((ok + 1))
  done
  echo "$ok of $((2 * n)) creations succeeded"
  (cd "$SCRATCH_MNT/new" && md5sum d*/f | sort) > "$TMP/new-sums"
}

_new_files_unchanged() {
  if (cd "$SCRATCH_MNT/new" && md5sum d*/f | sort) | cmp -s - "$TMP/new-sums"; then echo "new files unchanged"; else echo "NEW FILES CHANGED"; fi
}

# Eight files of 64 KiB in $SCRATCH_MNT/spread (new files' data is spread over the AGs); their
# inode numbers go to $TMP/spread-inos.
_spread_files() {
  local i
  mkdir -p "$SCRATCH_MNT/spread"
  for i in 1 2 3 4 5 6 7 8; do head -c 65536 /dev/urandom > "$SCRATCH_MNT/spread/f$i"; done
  (cd "$SCRATCH_MNT/spread" && md5sum f*) > "$TMP/spread-sums"
  (cd "$SCRATCH_MNT/spread" && stat -c '%i %n' f*) > "$TMP/spread-inos"
}

# The name (in spread/) of one of _spread_files' files whose data is all in AG $1; the filesystem
# must be unmounted (db reads the device).
_file_with_data_in_ag() {
  local agblocks ino name
  agblocks=$(_db_field "sb" agBlocks)
  while read -r ino name; do
    if "$RMAPFS" db "$SCRATCH_DEV" "records inode $ino" | awk -v ag="$1" -v n="$agblocks" '
        /^\[/ { total++; if (int($3 / n) == ag) here++ } END { exit !(total > 0 && here == total) }'; then
      echo "$name"
      return
    fi
  done < "$TMP/spread-inos"
}

_spread_unchanged() {
  if (cd "$SCRATCH_MNT/spread" && md5sum -c --quiet "$TMP/spread-sums" 2>/dev/null); then echo "spread files unchanged"; else echo "SPREAD FILES CHANGED"; fi
}

# Repair that cannot proceed: its one line (numbers filtered) and exit status.
_repair_refused() {
  "$RMAPFS" repair "$SCRATCH_MNT" > "$TMP/repair.out" 2>&1
  local status=$?
  _filter_numbers < "$TMP/repair.out"
  echo "repair: exit $status"
}

# ---- remount (tests 041, 047) ----

_state() {
  local w r ro
  # The write first: after a bare remount,rw it is what tells the daemon, if the mount table has not yet.
  w=$(_try sh -c "echo x >> '$SCRATCH_MNT/f1'")
  r=$(head -1 "$SCRATCH_MNT/f2")
  ro=$("$RMAPFS" status "$SCRATCH_MNT" | awk '$1 == "readOnly" {print $2}')
  echo "kernel: $(awk -v m="$SCRATCH_MNT" '$5 == m {print substr($6, 1, 2)}' /proc/self/mountinfo)," \
    "daemon read-only: $ro, write: $w, read: $r"
}
# The image as it is on disk now: clean, nothing in its log?
_on_disk() {
  cp "$SCRATCH_DEV" "$TMP/copy.img"
  "$RMAPFS" info "$TMP/copy.img" | awk '$1 == "state" {sub(",", "", $2); print "on disk:", $2} $1 == "log" && /committed/ {print "log not empty"}'
  "$RMAPFS" check "$TMP/copy.img" | sed -e 's/ (.*//'
}
# What mount(8) runs for `mount -o remount,ro MNT` (/sbin/mount.fuse.rmapfs with the options
# the mount shows): through mount(8) itself when /sbin has this checkout's helper.
_mount8_remount() {
  local root
  root=$(cd "$TEST_DIR/../.." && pwd)
  if [ "$(readlink -f /sbin/mount.fuse.rmapfs)" = "$root/bin/mount.fuse.rmapfs" ]; then
    mount -o "remount,$1" "$SCRATCH_MNT"
  else
    "$root/bin/mount.fuse.rmapfs" "$SCRATCH_DEV" "$SCRATCH_MNT" -o "$1,nosuid,nodev,relatime,remount,user_id=0,group_id=0,default_permissions"
  fi
}
# A bare mount(2) reaches the daemon through the mount table: wait until it has followed.
_wait_daemon_ro() {
  local i
  for i in $(seq 1 100); do
    [ "$("$RMAPFS" status "$SCRATCH_MNT" | awk '$1 == "readOnly" {print $2}')" = "$1" ] && return
    sleep 0.1
  done
}

# ---- inode btree repair (tests 064-066) ----

# A writer creating, rewriting and removing small files in the root directory (their inodes go to
# AG 0, or elsewhere while AG 0's inode btree is known damaged) until _inobt_writer_stop; a shadow copy
# in $TMP/wshadow says what each file must hold, failures go to $TMP/werrors.
_inobt_writer_start() {
  mkdir -p "$TMP/wshadow"
  rm -f "$TMP/wstop" "$TMP/werrors"
  (
    g=0
    while [ ! -e "$TMP/wstop" ]; do
      g=$((g + 1)); k=$((g % 40))
      if [ $((g % 3)) -eq 2 ]; then
        rm -f "$SCRATCH_MNT/w$k" && rm -f "$TMP/wshadow/w$k"
      else
        echo "w$k g$g" > "$SCRATCH_MNT/w$k" && echo "w$k g$g" > "$TMP/wshadow/w$k"
      fi || echo "writer: operation $g on w$k failed" >> "$TMP/werrors"
      echo $g > "$TMP/wops.new" && mv "$TMP/wops.new" "$TMP/wops"
    done
  ) &
  WRITER_PID=$!
  while [ "$(cat "$TMP/wops" 2>/dev/null || echo 0)" -lt 20 ]; do sleep 0.1; done
}

_inobt_writer_stop() {
  local before
  before=$(cat "$TMP/wops")
  while [ "$(cat "$TMP/wops")" -lt $((before + 20)) ]; do sleep 0.1; done
  touch "$TMP/wstop"
  wait "$WRITER_PID"
  if [ -s "$TMP/werrors" ]; then cat "$TMP/werrors"; else echo "the writer saw no error"; fi
}

_inobt_writer_unchanged() {
  local f bad=0
  for f in "$TMP"/wshadow/w*; do cmp -s "$f" "$SCRATCH_MNT/${f##*/}" || bad=$((bad + 1)); done
  for f in "$SCRATCH_MNT"/w*; do [ -e "$TMP/wshadow/${f##*/}" ] || bad=$((bad + 1)); done
  if [ $bad -eq 0 ]; then echo "the writer's files are as it left them"; else echo "$bad OF THE WRITER'S FILES DIFFER"; fi
}

# ---- offline repair (tests 110-112) ----

# Every file and symlink under SCRATCH_MNT with its content's checksum (or target), sorted.
_manifest() {
  (cd "$SCRATCH_MNT" && find . -type f -print0 | sort -z | xargs -0 md5sum && find . -type l -printf '%p -> %l\n' | sort)
}

# Offline repair of the scratch image: what it printed (numbers and pauses filtered) and its exit status.
_offline_repair_report() {
  "$RMAPFS" repair "$@" "$SCRATCH_DEV" > "$TMP/repair.out" 2>&1
  local status=$?
  sed -E -e 's/commit pause [0-9.]+ ms/commit pause T ms/' "$TMP/repair.out" | _filter | _filter_numbers
  echo "repair: exit $status"
}

# ---- heavy damage (tests 114, 115) ----

HEAVY=${HEAVY:-$TEST_DIR/../../dist/test/fsck/heavy-damage.js}

# Offline repair against heavy damage: the (unmounted) scratch image filled with $1 files in process
# (test/fsck/heavy-damage.ts: small and large files, xattrs, big directories, symlinks, hard links; a
# manifest of every name), then for each seed after it: random bytes over 1% of its metadata blocks
# (the rmap says which), `rmapfs repair` (exit 1), check clean, a second repair (exit 0), a mount, and
# every name the damage did not hit compared with the manifest. Figures (time, names hit, recovered)
# go to _stress_log, not to the output (they follow the repairers' progress).
_heavy_damage() {
  local files=$1 seed start ms out
  shift
  _scratch_unmount
  node "$HEAVY" build "$SCRATCH_DEV" "$TMP/manifest.json" --files "$files" --seed 1 > "$TMP/build.out" || _fail "build failed"
  _stress_log "$(cat "$TMP/build.out")"
  cp "$SCRATCH_DEV" "$TMP/base.img"
  for seed in "$@"; do
    echo "== seed $seed"
    cp "$TMP/base.img" "$SCRATCH_DEV"
    node "$HEAVY" damage "$SCRATCH_DEV" "$TMP/manifest.json" "$TMP/hits.json" --seed "$seed" > "$TMP/damage.out" || _fail "damage failed"
    start=$(date +%s%N)
    "$RMAPFS" repair "$SCRATCH_DEV" > "$TMP/repair.out" 2>&1
    echo "repair: exit $?"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    grep '^rmapfs repair' "$TMP/repair.out" | _filter | _filter_numbers
    _check_status
    "$RMAPFS" repair "$SCRATCH_DEV" > /dev/null 2>&1
    echo "repair again: exit $?"
    _scratch_mount
    out=$(node "$HEAVY" verify "$SCRATCH_MNT" "$TMP/manifest.json" "$TMP/hits.json") && echo "every name not hit is intact" \
      || { echo "NAMES NOT HIT CHANGED"; echo "$out" | grep '^NOT HIT' | head -5; }
    _scratch_unmount
    _stress_log "$(cat "$TMP/damage.out"); repair ${ms} ms, $(echo "$out" | head -1)"
  done
  _scratch_mount
}
