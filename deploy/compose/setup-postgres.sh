#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas up to
# date. Runs in the temporalio/admin-tools image before the server starts.
# Safe on every `docker compose up`: creating a database that exists is a
# no-op for temporal-sql-tool, setup-schema only adds the version tables if
# missing, and update-schema applies only the versions not yet applied.
# The password comes from SQL_PASSWORD (read by temporal-sql-tool), never argv.
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"
PORT="${DB_PORT:-5432}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$PORT" "$@"
}

for pair in "temporal:temporal" "temporal_visibility:visibility"; do
  database="${pair%%:*}"
  schema="${pair##*:}"
  echo "database $database: create if missing, then update its schema"
  sql_tool --db "$database" create
  sql_tool --db "$database" setup-schema -v 0.0
  sql_tool --db "$database" update-schema -d "$SCHEMA_DIR/$schema/versioned"
done
echo "PostgreSQL schemas are up to date"
