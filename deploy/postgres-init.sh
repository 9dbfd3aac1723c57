#!/usr/bin/env bash
# PostgreSQL first-start provisioning for the LeDeR services and the web application.
#
# Mounted into /docker-entrypoint-initdb.d by docker-compose.yml, so the postgres image runs it once,
# when the data volume is first initialised (delete the volume, or run it by hand, to apply it again:
# it is idempotent). For every service, and for the web application (its sessions), it makes one login
# role and one database of the same name, leder_<name>, owned by that role; no other role but the
# superuser may connect to it.
# Each role's password comes from LEDER_<SERVICE>_DB_PASSWORD (see .env.example); passwords are handed
# to psql through its environment, never on a command line.
#
# Keep LEDER_SERVICES in step with events/topics.py SERVICES, then web (services/web);
# tests/unit/test_compose_file.py checks.
set -eo pipefail

LEDER_SERVICES="notification allocation review governance audit web"

for leder_service in $LEDER_SERVICES; do
    leder_name="leder_${leder_service}"
    leder_password_var="LEDER_${leder_service^^}_DB_PASSWORD"
    if [ -z "${!leder_password_var}" ]; then
        echo "postgres-init: ${leder_password_var} is not set; cannot create role ${leder_name}" >&2
        exit 1
    fi
    echo "postgres-init: role and database ${leder_name}"
    LEDER_INIT_PASSWORD="${!leder_password_var}" psql -v ON_ERROR_STOP=1 --no-psqlrc \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
        -v name="${leder_name}" <<'SQL'
\getenv password LEDER_INIT_PASSWORD
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') AS create_role \gset
\if :create_role
CREATE ROLE :"name" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
\else
ALTER ROLE :"name" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') AS create_database \gset
\if :create_database
CREATE DATABASE :"name" OWNER :"name";
\endif
ALTER DATABASE :"name" OWNER TO :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
