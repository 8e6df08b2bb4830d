"""The Kubernetes adapter: typed operations on VMs, PVCs, VolumeSnapshots and records.

`cluster.client.Cluster` is the entry point (official `kubernetes` client). It knows
nothing of Temporal; the pure rules it applies (which disks a snapshot takes, names and
labels, durations) live in `rules/`. This package file imports nothing, so importing a
light module never drags the client in.
"""
