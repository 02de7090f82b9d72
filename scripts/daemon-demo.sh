#!/usr/bin/env bash
# `make run`'s daemon part: start xvrd on a simulated Xen host (the report's receive experiment
# with 8 domUs), show `xvrd status` once it has data, then stop it with SIGTERM as systemd would.
# Everything lives in a temporary directory; nothing outside it is touched.
set -euo pipefail
XVRD=${XVRD:-.venv/bin/xvrd}
dir=$(mktemp -d -t xvrd-demo.XXXXXX)
daemon=
cleanup() {
    if [[ -n $daemon ]] && kill -0 "$daemon" 2>/dev/null; then kill -TERM "$daemon"; wait "$daemon" || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
sock=$dir/xvrd.sock
# The socket's group must be one of ours so a non-root user can run the demo too.
export XVRD_CONTROL__GROUP=$(id -gn) XVRD_CONTROL__ADMIN_GROUP=$(id -gn) XVRD_LOG_FORMAT=console
"$XVRD" run --backend simulator --scenario receive-8 --interval 1 \
    --socket "$sock" --state-dir "$dir/state" 2>"$dir/daemon.log" &
daemon=$!
echo "xvrd run (pid $daemon) on a simulated host: receive, 8 domUs, every weight 256"
for _ in $(seq 1 60); do
    if "$XVRD" status --socket "$sock" --json 2>/dev/null | grep -q '"ticks": [2-9]'; then break; fi
    sleep 0.5
done
echo
echo "\$ xvrd status"
"$XVRD" status --socket "$sock"
echo
echo "\$ kill -TERM $daemon"
kill -TERM "$daemon"
wait "$daemon"
echo "daemon stopped (exit $?); its log:"
sed 's/^/  /' "$dir/daemon.log"
daemon=
