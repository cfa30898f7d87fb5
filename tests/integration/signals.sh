#!/bin/bash
# tp_signals survives dump/restore, --leave-running, and a second checkpoint after restore.
source "$(dirname "$0")/lib.sh"
cycle tp_signals
cycle tp_itimer_pending
