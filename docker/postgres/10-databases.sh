#!/bin/sh
# First start of the PostgreSQL volume: one database and one role each for Dagster and MLflow (passwords from
# the environment, i.e. docker/.env; never in this file). The official image runs this once, as the superuser.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v dagster_password="$DAGSTER_POSTGRES_PASSWORD" -v mlflow_password="$MLFLOW_POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE dagster LOGIN PASSWORD :'dagster_password';
CREATE DATABASE dagster OWNER dagster;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
SQL
