#!/bin/sh
# What a build added to or changed in an install prefix, for a spec built on another package's images
# (extends): its runtime image is the other's runtime image plus one layer of these files only, so every
# layer below is shared. Files are compared by content (sha256), links by their target: a file the build
# rewrote with the same bytes (a CALDB copied again) is not in the layer.
#   prefix-delta.sh snapshot PREFIX LIST        before the build: what the prefix holds
#   prefix-delta.sh collect PREFIX LIST OUT     after it: new or changed files and links, copied to OUT/PREFIX
# A file of the snapshot that is gone fails the build: one layer can add and replace files, not remove them
# from the image below (the runtime image would still have it).
set -eu
listing() {     # "<sha256 or link:target>  <path>" for every file and link under $1, sorted
    { find "$1" -type f -print0 | xargs -0 -r sha256sum
      find "$1" -type l | while IFS= read -r f; do printf 'link:%s  %s\n' "$(readlink "$f")" "$f"; done
    } | LC_ALL=C sort
}
paths() { cut -d' ' -f3- "$1" | LC_ALL=C sort; }
case "${1:-}" in
snapshot)
    mkdir -p "$2"
    listing "$2" > "$3"
    echo "prefix-delta.sh: $(wc -l < "$3") file(s) in $2 before the build"
    ;;
collect)
    prefix=$2; before=$3; out=$4
    tmp=$(mktemp -d)
    listing "$prefix" > "$tmp/now"
    paths "$before" > "$tmp/before.paths"
    paths "$tmp/now" > "$tmp/now.paths"
    gone=$(LC_ALL=C comm -23 "$tmp/before.paths" "$tmp/now.paths")
    if [ -n "$gone" ]; then
        echo "prefix-delta.sh: the build removed file(s) of the image it starts from (a layer cannot):" >&2
        echo "$gone" | head -n 20 >&2
        exit 1
    fi
    mkdir -p "$out"
    LC_ALL=C sort "$before" > "$tmp/before"
    LC_ALL=C comm -13 "$tmp/before" "$tmp/now" | cut -d' ' -f3- | sed 's|^/||' > "$tmp/new"
    n=$(wc -l < "$tmp/new")
    # tar, not cp -a --parents (coreutils 9.1 copies, then fails on the parents' attributes)
    tar -C / --no-recursion -cf - -T "$tmp/new" | tar -C "$out" -xpf -
    rm -rf "$tmp"
    echo "prefix-delta.sh: $n file(s) new or changed in $prefix, gathered in $out ($(du -sh "$out" | cut -f1))"
    ;;
*)
    echo "usage: prefix-delta.sh snapshot PREFIX LIST | collect PREFIX LIST OUT" >&2
    exit 2
    ;;
esac
