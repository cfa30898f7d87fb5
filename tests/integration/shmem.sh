#!/bin/bash
# MAP_SHARED|MAP_ANONYMOUS memory shared by a parent and its child is shared again after restore.
source "$(dirname "$0")/lib.sh"
cycle tp_shmem
