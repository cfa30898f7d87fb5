# Shell helpers for the RPC integration tests (source after tests/integration/lib.sh).
# rpc ARGS...: runs tests/rpc/crpc.py against $CRSHIM; RPC_SERVICE=SOCK talks to a service instead of swrk.

PY=/usr/bin/python3  # Debian's python: it has google.protobuf for pycriu's rpc_pb2
"$PY" -c 'import sys; sys.path.insert(0, "/usr/lib/python3/dist-packages"); import pycriu.rpc_pb2' 2>/dev/null ||
  fail "pycriu is missing: install Debian's criu package"

rpc() {
  if [[ -n "${RPC_SERVICE:-}" ]]; then
    "$PY" "$SRC/tests/rpc/crpc.py" --crshim "$CRSHIM" --service "$RPC_SERVICE" "$@"
  else
    "$PY" "$SRC/tests/rpc/crpc.py" --crshim "$CRSHIM" "$@"
  fi
}

# field NAME FILE: the value of the first NAME=... line of a client output.
field() { sed -n "s/^$1=//p" "$2" | head -1; }

# expect NAME VALUE FILE
expect() {
  local got
  got=$(field "$1" "$3")
  [[ "$got" == "$2" ]] || fail "$1 is '$got', expected '$2' (in $3:
$(cat "$3"))"
}

# expect_in NAME TEXT FILE: NAME's value contains TEXT.
expect_in() {
  local got
  got=$(field "$1" "$3")
  [[ "$got" == *"$2"* ]] || fail "$1 does not contain '$2' (in $3:
$(cat "$3"))"
}
