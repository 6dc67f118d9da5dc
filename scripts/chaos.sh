#!/usr/bin/env bash
# The crash-and-outage harness (README "Guarantees"): builds the `chaos` binary in release
# mode and runs it on each backend. Defaults: 4 worker processes, 500 workflows, 50 SIGKILLs.
#
#   scripts/chaos.sh                         # redis, then postgres
#   scripts/chaos.sh postgres --outages 3    # also cut the network to the store 3 times
#   scripts/chaos.sh redis --instances 2 --workflows 30 --kills 3
#
# On a dedicated machine the outage can stop the server itself instead of the proxy, e.g.
#   --outage-down 'pg_ctlcluster 15 main stop -m immediate' --outage-up 'pg_ctlcluster 15 main start'
# (never on a shared server, and for Redis only with AOF persistence: a restart without it
# loses every key). Each run prints one `CHAOS ...` line; the script fails if any run does.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-both}"
[ $# -gt 0 ] && shift
case "$backend" in
  both) backends="redis postgres" ;;
  redis | postgres) backends="$backend" ;;
  *) echo "usage: scripts/chaos.sh [redis|postgres|both] [chaos options]" >&2; exit 2 ;;
esac
cargo build --release -p baseshift-benches --bin chaos
status=0
for b in $backends; do
  target/release/chaos --backend "$b" "$@" || status=1
done
exit "$status"
