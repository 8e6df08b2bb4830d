"""The Kubernetes adapter: typed operations on VMs, PVCs and VolumeSnapshots.

`cluster.client.Cluster` is the entry point (official `kubernetes` client);
`cluster.models`, `cluster.errors` and `cluster.durations` have no Kubernetes
dependency, so workflows may import them. This package file imports nothing,
so importing a light module never drags the client in.
"""
