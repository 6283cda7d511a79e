#!/bin/sh
# Entrypoint of the trove-builder MariaDB image: the parts of the official mysql/mariadb images'
# entrypoint that Trove relies on, and nothing else.
#  - options only ("--datadir=..."): they are mariadbd's;
#  - an empty data dir is initialised once: root@localhost and root@'%' get MYSQL_ROOT_PASSWORD
#    (or MARIADB_ROOT_PASSWORD); time zone tables are not loaded (MYSQL_INITDB_SKIP_TZINFO);
#  - run as root, it hands the data dir to the mysql user and drops to it;
#  - mariadbd replaces this script (it is the container's main process and gets docker's signals).
set -eu

log() { echo "entrypoint: $*" >&2; }

case "${1:-}" in
    -*) set -- mariadbd "$@" ;;
esac
case "${1:-}" in
    mariadbd|mysqld) shift; set -- mariadbd "$@" ;;
    *) exec "$@" ;;
esac

# The data dir: the last --datadir on the command line, else the option files', else the default.
datadir=
for arg in "$@"; do
    case "$arg" in --datadir=*) datadir=${arg#--datadir=} ;; esac
done
if [ -z "$datadir" ]; then
    datadir=$(my_print_defaults mysqld mariadbd | sed -n 's/^--datadir=//p' | tail -n 1)
fi
datadir=${datadir:-/var/lib/mysql}

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$datadir" /run/mysqld
    chown mysql:mysql "$datadir" /run/mysqld
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi

if [ ! -d "$datadir/mysql" ]; then
    password=${MYSQL_ROOT_PASSWORD:-${MARIADB_ROOT_PASSWORD:-}}
    allow_empty=${MYSQL_ALLOW_EMPTY_PASSWORD:-${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}}
    if [ -z "$password" ] && [ -z "$allow_empty" ]; then
        log "the data dir $datadir is empty and MYSQL_ROOT_PASSWORD is not set"
        exit 1
    fi
    log "initialising $datadir"
    shift
    mariadb-install-db "$@" --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve --cross-bootstrap >/dev/null
    socket=$(mktemp -u /tmp/init-XXXXXX.sock)
    mariadbd "$@" --datadir="$datadir" --skip-networking --socket="$socket" &
    pid=$!
    tries=60
    until mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1; do
        tries=$((tries - 1))
        if [ "$tries" = 0 ] || ! kill -0 "$pid" 2>/dev/null; then
            log "the initialising server did not start"
            exit 1
        fi
        sleep 1
    done
    escaped=$(printf '%s' "$password" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g")
    mariadb --socket="$socket" -uroot <<SQL
SET @@SESSION.SQL_LOG_BIN=0;
DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$escaped';
CREATE USER 'root'@'${MYSQL_ROOT_HOST:-%}' IDENTIFIED BY '$escaped';
GRANT ALL ON *.* TO 'root'@'${MYSQL_ROOT_HOST:-%}' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    mariadb-admin --socket="$socket" -uroot -p"$password" shutdown
    wait "$pid" || true
    log "initialised"
    set -- mariadbd "$@"
fi

exec "$@"
