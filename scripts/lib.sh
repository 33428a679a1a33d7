# Shared by scripts/test.sh and the benchmark scripts: a throw-away PostgreSQL cluster.
# Source it, call `pg_start` (exports PG_PORT, PG_URL), and `pg_stop` in a trap.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg_user() {
  # initdb and pg_ctl refuse to run as root: run them as `postgres` when we are root.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start WORKDIR [extra server settings…]
pg_start() {
  local work="$1"; shift
  PG_DATA="$work/pg"
  local bin
  bin="$(dirname "$(command -v initdb || echo /usr/lib/postgresql/15/bin/initdb)")"
  export PATH="$bin:$PATH"
  PG_PORT="$(free_port)"
  mkdir -p "$PG_DATA"
  chmod 755 "$work"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DATA" "$work"; fi
  as_pg_user initdb -D "$PG_DATA" -U prdiff --auth=trust --encoding=UTF8 --locale=C >"$work/initdb.log" 2>&1 \
    || { cat "$work/initdb.log"; return 1; }
  local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $work -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
  for o in "$@"; do opts="$opts -c $o"; done
  as_pg_user pg_ctl -D "$PG_DATA" -l "$work/pg.log" -w -t 60 start -o "$opts" >/dev/null \
    || { cat "$work/pg.log"; return 1; }
  export PG_PORT PG_DATA
  export PG_URL="postgres://prdiff@127.0.0.1:$PG_PORT/postgres"
}

pg_stop() {
  if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg_user pg_ctl -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
}
