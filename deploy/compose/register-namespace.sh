#!/bin/sh
# Registers the vmsnap namespace and the search attributes its workflows
# upsert (all Keyword), so that the Temporal UI can filter "all snapshots of
# VM x". Runs in the temporalio/admin-tools image once the server is healthy;
# safe to run again (what exists is kept; a search attribute that exists with
# another type makes it fail loudly).
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${VMSNAP_NAMESPACE:-default}"
RETENTION="${VMSNAP_RETENTION:-7d}"
ATTEMPTS="${VMSNAP_REGISTER_ATTEMPTS:-30}"
# Keep in step with starter/local_stack.py SEARCH_ATTRIBUTES (a test checks it).
SEARCH_ATTRIBUTES="VmName VmNamespace SnapshotPhase VmsnapOperation VmsnapCluster"

retry() {
  attempt=1
  until "$@"; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
      echo "gave up after $ATTEMPTS attempts: $*" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    sleep 2
  done
}

retry temporal operator cluster health --address "$ADDRESS" >/dev/null

if temporal operator namespace describe --address "$ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create --address "$ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"
  echo "namespace $NAMESPACE created (retention $RETENTION)"
fi

list_attributes() {
  temporal operator search-attribute list --address "$ADDRESS" -n "$NAMESPACE" -o json
}
# A new namespace takes a few seconds to reach every server role: retry.
existing=$(retry list_attributes)

for name in $SEARCH_ATTRIBUTES; do
  if printf '%s\n' "$existing" | grep -q "\"$name\": *\"INDEXED_VALUE_TYPE_KEYWORD\""; then
    echo "search attribute $name exists"
  else
    retry temporal operator search-attribute create --address "$ADDRESS" -n "$NAMESPACE" \
      --name "$name" --type Keyword
    echo "search attribute $name created"
  fi
done
