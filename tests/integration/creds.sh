#!/bin/bash
# A process that dropped to another uid with one capability, no_new_privs and a seccomp filter.
source "$(dirname "$0")/lib.sh"
chmod 0777 "$WORK"  # the program writes its ready and result files as uid 1000
cycle tp_creds
