# Shared by scripts/test.sh and the benchmark scripts: a throw-away PostgreSQL cluster.
# Source it, call `pg_start` (exports PG_PORT, PG_URL), and `pg_stop` in a trap.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg_user() {
  # initdb and pg_ctl refuse to run as root: run them as `postgres` when we are root.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_tls_files DIR: a throw-away CA, a server certificate it signed for the name
# `localhost` only (no IP address: a client checking names must use `localhost`), and a
# second CA that signed nothing, for the tests that must refuse a server.
pg_tls_files() {
  local dir="$1"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=prdiff test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=untrusted CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout other_ca.key -out other_ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt
  ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log"; return 1; }
  chmod 600 "$dir/server.key"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/server.key" "$dir/server.crt"; fi
}

# pg_start WORKDIR [extra server settings…]
# With PG_TLS=1 the cluster also serves TLS (certificates from pg_tls_files in WORKDIR/tls)
# and has a role `prdiff_tls` that may only connect over TLS; it exports PG_TLS_DIR. The user
# `prdiff_pw` must log in with a password (it has none, so every login fails the way a wrong
# password does).
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
  if [ "${PG_TLS:-0}" = 1 ]; then
    PG_TLS_DIR="$work/tls"
    pg_tls_files "$PG_TLS_DIR"
    opts="$opts -c ssl=on -c ssl_cert_file=$PG_TLS_DIR/server.crt -c ssl_key_file=$PG_TLS_DIR/server.key"
    # First match wins: prdiff_tls is refused without TLS; everyone else may use either.
    cat >"$PG_DATA/pg_hba.conf" <<HBA
local all all trust
hostnossl all prdiff_tls 127.0.0.1/32 reject
host all prdiff_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
HBA
    if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DATA/pg_hba.conf"; fi
    export PG_TLS_DIR
  fi
  for o in "$@"; do opts="$opts -c $o"; done
  as_pg_user pg_ctl -D "$PG_DATA" -l "$work/pg.log" -w -t 60 start -o "$opts" >/dev/null \
    || { cat "$work/pg.log"; return 1; }
  export PG_PORT PG_DATA
  export PG_URL="postgres://prdiff@127.0.0.1:$PG_PORT/postgres"
  if [ "${PG_TLS:-0}" = 1 ]; then
    psql -h "$work" -p "$PG_PORT" -U prdiff -d postgres -qc "CREATE ROLE prdiff_tls SUPERUSER LOGIN" >/dev/null
  fi
}

pg_stop() {
  if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg_user pg_ctl -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
}
