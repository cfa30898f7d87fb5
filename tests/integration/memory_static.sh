#!/bin/bash
# tp_memory_static survives dump/restore, --leave-running, and a second checkpoint after restore.
source "$(dirname "$0")/lib.sh"
cycle tp_memory_static
