# Sourced by scripts/test.sh: the local services the tests use, started if they are not running.
# PostgreSQL (5432), MariaDB (3306) and Redis (6379, the Celery broker) normally run before a session starts;
# on a machine where one is down, start it with what the machine has (Debian's service scripts, or
# redis-server itself), and say so when it still does not answer.

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_ensure_service() {  # name port command...
    local name=$1 port=$2
    shift 2
    _port_open "$port" && return 0
    echo "== starting $name (nothing answers on 127.0.0.1:$port)" >&2
    "$@" >/dev/null 2>&1 || true
    for _ in $(seq 30); do
        _port_open "$port" && return 0
        sleep 1
    done
    echo "warning: $name still does not answer on 127.0.0.1:$port; the tests that need it will fail" >&2
}

_start_redis() {
    if command -v service >/dev/null && service redis-server start; then return 0; fi
    command -v redis-server >/dev/null &&
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
}

_ensure_service PostgreSQL 5432 service postgresql start
_ensure_service MariaDB 3306 service mariadb start
_ensure_service Redis 6379 _start_redis
