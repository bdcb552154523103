#!/bin/sh
# Split the debug info of every ELF file under PREFIX into DEBUG_ROOT/.build-id/xx/yyyy.debug
# (where gdb looks by GNU build-id), then strip it from the file and add a debuglink.
# Usage: split-debug.sh PREFIX DEBUG_ROOT
set -eu
prefix=$1
debug_root=$2
count=0
skipped=0
# read the list from a file, not a pipe: the loop stays in this shell (its counters and `exit 1`
# count) and names with spaces stay whole
list=$(mktemp)
find "$prefix" -type f >"$list"
while IFS= read -r f; do
    # ELF magic: 0x7f 'E' 'L' 'F'
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' \n')" = '177ELF' ] || continue
    if ! readelf -S "$f" 2>/dev/null | grep -q '\.debug_info'; then
        # prebuilt without -g (e.g. an external): nothing to split; the debug image check reports it
        echo "split-debug: $f carries no debug info, left as it is" >&2
        skipped=$((skipped + 1))
        continue
    fi
    id=$(readelf -n "$f" 2>/dev/null | sed -n 's/.*Build ID: *\([0-9a-f]*\).*/\1/p' | head -n 1)
    if [ -z "$id" ]; then
        echo "split-debug: $f has debug info but no GNU build-id: gdb could not find its split file (link with --build-id)" >&2
        exit 1
    fi
    dir="$debug_root/.build-id/$(echo "$id" | cut -c1-2)"
    out="$dir/$(echo "$id" | cut -c3-).debug"
    mkdir -p "$dir"
    # compressed where binutils can (2.26+; gdb reads it): a third of the size in the debug image
    objcopy --only-keep-debug --compress-debug-sections=zlib "$f" "$out" 2>/dev/null \
        || objcopy --only-keep-debug "$f" "$out"
    chmod 0644 "$out"
    objcopy --strip-debug --add-gnu-debuglink="$out" "$f"
    count=$((count + 1))
done <"$list"
rm -f "$list"
echo "split-debug: $count ELF file(s) under $prefix split into $debug_root; $skipped without debug info"
