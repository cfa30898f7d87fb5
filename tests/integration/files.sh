#!/bin/bash
# Regular files keep offsets and flags, and cwd/umask survive, across dump/restore.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"
# The program appends to its files while verifying; each restore gets the files as they were at dump.
on_checkpointed() { rm -rf "$1.files"; cp -a "$WORK/files" "$1.files"; }
on_restore() { rm -rf "$WORK/files"; cp -a "$1.files" "$WORK/files"; }
cycle tp_files "$WORK/files"
