#!/bin/bash
# tp_threads survives dump/restore, --leave-running, and a second checkpoint after restore.
source "$(dirname "$0")/lib.sh"
cycle tp_threads
