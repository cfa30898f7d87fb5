#!/bin/bash
# Signalfds (mask, flags) and the signal pending at dump survive dump/restore and a second checkpoint.
source "$(dirname "$0")/lib.sh"
cycle tp_signalfd
