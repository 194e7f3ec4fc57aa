# A writer for the online repair tests (075-079): one background process that keeps creating
# files of known content in $SCRATCH_MNT/w until told to stop. Source after common.sh.

# How many files it has written (0 before its first; the file may be caught mid-write).
_writer_count() {
  local n
  n=$(cat "$TMP/writer.count" 2> /dev/null)
  echo "${n:-0}"
}

# Starts it; the runner's unmount must not find it running, so the test's exit stops it too.
_writer_start() {
  mkdir -p "$SCRATCH_MNT/w"
  rm -f "$TMP/writer.stop" "$TMP/writer.errors"
  (
    i=0
    while [ ! -e "$TMP/writer.stop" ]; do
      i=$((i + 1))
      head -c $(( (i % 5 + 1) * 3000 )) /dev/zero | tr '\0' "$(printf "\\$(printf %o $((i % 26 + 97)))")" \
        > "$SCRATCH_MNT/w/f$i" 2>> "$TMP/writer.errors" || echo "write of w/f$i failed" >> "$TMP/writer.errors"
      [ $((i % 10)) -eq 0 ] && rm -f "$SCRATCH_MNT/w/f$((i - 5))"
      echo "$i" > "$TMP/writer.count.new" && mv "$TMP/writer.count.new" "$TMP/writer.count"
    done
  ) &
  WRITER_PID=$!
  trap '_writer_stop > /dev/null' EXIT
  # Let it get going: the repair must meet writes in flight.
  while [ "$(_writer_count)" -lt 20 ]; do sleep 0.05; done
}

# Stops it (once it has written 20 more files) and says whether every write succeeded and every
# file it kept holds what it wrote.
_writer_stop() {
  [ -n "${WRITER_PID:-}" ] || return 0
  local from bad=0 f i
  from=$(_writer_count)
  while kill -0 "$WRITER_PID" 2> /dev/null && [ "$(_writer_count)" -lt $((from + 20)) ]; do sleep 0.05; done
  touch "$TMP/writer.stop"
  wait "$WRITER_PID"
  WRITER_PID=
  for f in "$SCRATCH_MNT"/w/f*; do
    i=${f##*/f}
    [ "$(stat -c %s "$f")" -eq $(( (i % 5 + 1) * 3000 )) ] && [ -z "$(tr -d "$(printf "\\$(printf %o $((i % 26 + 97)))")" < "$f")" ] \
      || bad=$((bad + 1))
  done
  if [ -s "$TMP/writer.errors" ]; then echo "writer errors:"; head -5 "$TMP/writer.errors"; fi
  [ "$bad" -eq 0 ] && echo "writer: every write succeeded, its files as written" || echo "writer: $bad files differ"
}
