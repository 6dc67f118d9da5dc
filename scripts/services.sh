#!/usr/bin/env bash
# Makes sure the servers the backend tests talk to are reachable:
#   Redis      at $BASESHIFT_REDIS_URL    (default redis://127.0.0.1:6379)
#   PostgreSQL at $BASESHIFT_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test)
# A server that already answers is left alone. A missing one is installed from Debian's
# packages (redis-server, postgresql) and started as a throwaway local instance.
# Also installs kcat (Debian package), the stock Kafka client the Kafka tests read with.
set -euo pipefail

redis_port=6379
pg_port=5432

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_apt_update=1
apt_install() {
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if port_open "$redis_port"; then
  echo "services: redis answers on 127.0.0.1:$redis_port"
else
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /tmp/baseshift-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir /tmp/baseshift-redis --logfile /tmp/baseshift-redis/redis.log
  for _ in $(seq 1 50); do port_open "$redis_port" && break; sleep 0.1; done
  port_open "$redis_port" || { echo "services: could not start redis" >&2; exit 1; }
  echo "services: started redis on 127.0.0.1:$redis_port"
fi

if port_open "$pg_port"; then
  echo "services: postgres answers on 127.0.0.1:$pg_port"
else
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then apt_install postgresql; fi
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  data=/tmp/baseshift-pg
  if [ ! -d "$data" ]; then
    mkdir -p "$data" && chown postgres "$data" 2>/dev/null || true
    su postgres -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null
  fi
  su postgres -c "$bin/pg_ctl -D $data -o '-p $pg_port -k /tmp -c listen_addresses=127.0.0.1' -l $data/log start" >/dev/null
  for _ in $(seq 1 100); do port_open "$pg_port" && break; sleep 0.1; done
  port_open "$pg_port" || { echo "services: could not start postgres" >&2; exit 1; }
  su postgres -c "$bin/psql -h 127.0.0.1 -p $pg_port -U postgres -tc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
    || su postgres -c "$bin/createdb -h 127.0.0.1 -p $pg_port -U postgres test"
  echo "services: started postgres on 127.0.0.1:$pg_port"
fi

if command -v kcat >/dev/null; then
  echo "services: kcat is installed"
else
  apt_install kcat
  echo "services: installed kcat"
fi
