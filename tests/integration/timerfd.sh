#!/bin/bash
# Timerfds (clock, interval, absolute deadline, unread expirations) survive dump/restore and a second checkpoint.
source "$(dirname "$0")/lib.sh"
cycle tp_timerfd
