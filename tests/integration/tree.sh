#!/bin/bash
# A 12-process, 3-level tree with threads, a zombie, two sessions and three groups survives
# dump/restore with every pid, ppid, pgid, sid, thread count and memory intact.
source "$(dirname "$0")/lib.sh"
cycle tp_tree
