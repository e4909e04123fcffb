#!/usr/bin/env bash
# make demo: mask the e-mail domains of a few-hundred-MB CSV with the mapped example DAG
# (plan -> one patch task per batch of shards -> verified atomic commit), run by
# `airflow dags test` on SQLite in a local AIRFLOW_HOME, then check every byte.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
DEMO_DIR=${DEMO_DIR:-$ROOT/demo-data}
DEMO_SIZE=${DEMO_SIZE:-300MB}

# Only our settings: a user's own AIRFLOW_* must not point the demo at their deployment.
for var in $(env | grep -o '^AIRFLOW[A-Z_]*' || true); do unset "$var"; done
export AIRFLOW_HOME=$DEMO_DIR/airflow-home
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags_examples
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export BIGFILE_DEMO_FILE=$DEMO_DIR/emails.csv
export BIGFILE_DEMO_STAGING=$DEMO_DIR/staging
export BIGFILE_DEMO_SHARD_SIZE=${DEMO_SHARD_SIZE:-16MiB}
export BIGFILE_DEMO_MAX_BATCHES=${DEMO_MAX_BATCHES:-64}
mkdir -p "$AIRFLOW_HOME"
LOG=$DEMO_DIR/dag-test.log

step() { printf '\n==> %s\n' "$*"; }

step "making a $DEMO_SIZE sample CSV"
"$VENV/bin/python" scripts/make_sample.py make "$BIGFILE_DEMO_FILE" --size "$DEMO_SIZE" \
    --facts "$DEMO_DIR/facts.json"
echo "first rows before:"
head -4 "$BIGFILE_DEMO_FILE" | sed 's/^/    /'

step "airflow db migrate (SQLite in $AIRFLOW_HOME)"
"$VENV/bin/airflow" db migrate > "$DEMO_DIR/db-migrate.log" 2>&1 \
    || { tail -30 "$DEMO_DIR/db-migrate.log"; exit 1; }
echo "ok"

step "airflow providers list | grep bigfile"
"$VENV/bin/airflow" providers list 2>/dev/null | grep -i bigfile || {
    echo "airflow-bigfile is not registered as a provider"; exit 1; }

step "airflow dags test bigfile_mask_emails ($BIGFILE_DEMO_SHARD_SIZE shards, at most $BIGFILE_DEMO_MAX_BATCHES mapped tasks)"
started=$(date +%s)
if ! "$VENV/bin/airflow" dags test bigfile_mask_emails > "$LOG" 2>&1; then
    tail -60 "$LOG"; echo "the DAG run failed; full log: $LOG"; exit 1
fi
grep -q "state=success" "$LOG" || { tail -60 "$LOG"; echo "the DAG run failed: $LOG"; exit 1; }
echo "DAG run succeeded in $(( $(date +%s) - started )) s: $(grep -c 'end task task_id=patch' "$LOG") mapped patch tasks (log: $LOG)"
grep -o "Planned .*staging" "$LOG" | head -1 | sed 's/^/    /' || true
echo "first rows after:"
head -4 "$BIGFILE_DEMO_FILE" | sed 's/^/    /'

step "verifying"
"$VENV/bin/python" scripts/make_sample.py verify "$BIGFILE_DEMO_FILE" \
    --facts "$DEMO_DIR/facts.json" --log "$LOG"
