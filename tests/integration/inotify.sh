#!/bin/bash
# Inotify watches (wd numbers with gaps, masks) survive dump/restore and a second checkpoint; the
# watched directory and files stay in place across every cycle.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/watched"
cycle tp_inotify "$WORK/watched"
