#!/bin/sh
# compose-credentials.sh: the broker's entrypoint in docker-compose.yml. The admin and auth-service
# passwords have no default anyone could read in this repository: each is the caller's
# (NATS_ADMIN_PASSWORD, AUTH_SERVICE_PASSWORD in the shell or .env) when set, else generated once
# and kept in a volume. Then it runs nats-server with the arguments given (exec, so the broker is
# PID 1 and gets the stop signal).
#
#   admin         /data/credentials/admin (the broker's nats-data volume, mode 600): read it with
#                 docker compose exec nats cat /data/credentials/admin
#   auth-service  /credentials/auth-service/password (the volume nats-credentials-auth-service,
#                 mounted read-only into auth-service only, which reads it as NATS_PASSWORD_FILE)
#
# A password is 32 characters: a letter, then hexadecimal digits (the broker reads a variable's
# text as a configuration value, so it must not start with a digit).
set -eu

generate() {
    printf 'p%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" | cut -c1-32
}

# keep VARIABLE FILE MODE: the caller's value of VARIABLE when set (written to FILE), else FILE's
# first line, else a generated one (written to FILE); exported as VARIABLE for the broker.
keep() {
    variable=$1 file=$2 mode=$3
    eval "given=\${$variable:-}"
    mkdir -p "$(dirname "$file")"
    if [ -n "$given" ]; then
        printf '%s\n' "$given" > "$file.new"
    elif [ -s "$file" ]; then
        head -n 1 "$file" > "$file.new"
    else
        generate > "$file.new"
        echo "compose-credentials: generated the $variable password into $file" >&2
    fi
    value=$(head -n 1 "$file.new")
    case $value in
        [A-Za-z]*) ;;
        *) rm -f "$file.new"; echo "compose-credentials: $variable must start with a letter (letters, digits, '-', '_')" >&2; exit 2 ;;
    esac
    chmod "$mode" "$file.new"
    mv "$file.new" "$file"
    export "$variable=$value"
}

keep NATS_ADMIN_PASSWORD /data/credentials/admin 600
# Readable by auth-service's user (another uid) through the volume only it and the broker mount.
keep AUTH_SERVICE_PASSWORD /credentials/auth-service/password 644
exec nats-server "$@"
