#!/bin/bash
# A pipe and an open file shared by two processes stay shared (one queue, one offset).
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"
on_checkpointed() { rm -rf "$1.files"; cp -a "$WORK/files" "$1.files"; }
on_restore() { rm -rf "$WORK/files"; cp -a "$1.files" "$WORK/files"; }
cycle tp_shared_fds "$WORK/files"
