#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and development (the state database on PostgreSQL).
#
#   scripts/pg-cluster.sh install               install Debian's postgresql when it is missing (root, apt-get)
#   scripts/pg-cluster.sh start DIR PORT [DB]   make a cluster in DIR (once), start it on 127.0.0.1:PORT,
#                                               create database DB (default recsys), print its URL
#   scripts/pg-cluster.sh stop DIR [PORT]       stop it (DIR stays; delete it to throw the cluster away)
#
# The cluster is for throwaway use only: it trusts every connection from 127.0.0.1 and its own
# socket (no password), runs with fsync off, and listens nowhere else. PostgreSQL refuses to run as
# root, so as root initdb and the server run as the `postgres` user (made by the Debian package),
# which owns DIR: DIR must be reachable by that user (e.g. made under /tmp, not under a 0700
# folder). The newest /usr/lib/postgresql/*/bin is used (15 on Debian 12), or PG_BIN if set.
# Example: scripts/pg-cluster.sh start /tmp/pg 55432  ->  postgresql+psycopg://postgres@127.0.0.1:55432/recsys
set -euo pipefail

die() { echo "pg-cluster: $*" >&2; exit 1; }

find_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] && echo "$PG_BIN" && return 0
        return 1
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install() {
    if find_bin >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL is not installed and installing it needs root and apt-get (apt-get install postgresql)"
    echo "pg-cluster: installing Debian's postgresql (once)..." >&2
    # This script makes its own clusters: do not let the package create (and start) a default one.
    # Only on a machine that has never had postgresql-common, whose postinst then keeps the file
    # (ucf, told to keep existing files; never a question: no terminal here).
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
    apt-cache show postgresql >/dev/null 2>&1 || apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql >/dev/null </dev/null
    find_bin >/dev/null || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
}

# Run a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2 db=${3:-recsys}
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    install
    local bin
    bin=$(find_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
        getent passwd postgres >/dev/null || die "there is no postgres user (Debian's postgresql package makes it)"
        chown postgres: "$dir"
        as_owner test -w "$dir" || die "the postgres user cannot write $dir: make DIR where it can reach it (e.g. under /tmp)"
    fi
    if [ ! -s "$dir/data/PG_VERSION" ]; then
        as_owner mkdir -p "$dir/data" "$dir/run"
        as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale --no-sync \
            --no-instructions >"$dir/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
        cat >>"$dir/data/postgresql.conf" <<EOF
# throwaway cluster (scripts/pg-cluster.sh): speed over durability
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/run" start >/dev/null ||
            die "the server did not start on 127.0.0.1:$port: $(tail -n 5 "$dir/postgresql.log")"
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
        "${psql[@]}" -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/$db"
}

stop() {
    local dir=$1 bin
    bin=$(find_bin) || die "PostgreSQL is not installed"
    [ -d "$dir/data" ] || return 0
    if as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
}

case "${1:-}" in
    install) install ;;
    start) [ $# -ge 3 ] || die "usage: $0 start DIR PORT [DB]"; start "$2" "$3" "${4:-recsys}" ;;
    stop) [ $# -ge 2 ] || die "usage: $0 stop DIR [PORT]"; stop "$2" ;;
    *) die "usage: $0 install | start DIR PORT [DB] | stop DIR [PORT]" ;;
esac
