#!/bin/sh
# Copy every file created or changed after MARK (by change time: package managers keep the
# archive's mtimes) into DEST, keeping paths, so one COPY can add them to another image.
# Usage: collect-new-files.sh MARK DEST
set -eu
mark=$1
dest=$2
mkdir -p "$dest"
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path "$dest" \) -prune \
    -o \( -type f -o -type l \) -cnewer "$mark" -print | while read -r f; do
    cp -a --parents "$f" "$dest"
done
echo "collect-new-files: $(find "$dest" -type f | wc -l) file(s) gathered in $dest"
