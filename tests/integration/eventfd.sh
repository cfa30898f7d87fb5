#!/bin/bash
# Eventfds (counter, semaphore mode, flags, sharing) survive dump/restore, --leave-running and a second checkpoint.
source "$(dirname "$0")/lib.sh"
cycle tp_eventfd
