#!/bin/bash
# A process that dropped to another uid with one capability, no_new_privs and a seccomp filter; and
# one that installed its filter while root and never set no_new_privs (as a container's init).
source "$(dirname "$0")/lib.sh"
chmod 0777 "$WORK"  # the program writes its ready and result files as uid 1000
cycle tp_creds
cycle tp_creds no-nnp
