"""Side effects of the workflows: small, idempotent steps on the cluster (see snapshot.py)."""
