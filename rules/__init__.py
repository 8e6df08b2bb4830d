"""The pure rules every layer shares: durations, names and labels, which disks a
snapshot takes, how a clone's spec is made, which leftovers are orphans, and the plain
models they speak in.

Nothing here imports Temporal or a Kubernetes client, or does I/O: workflows (which
Temporal replays), activities, the adapter, the client side and the tests all apply the
same rules by importing them from here. A layer contract checks it.
"""
