"""The public contract of vmsnap, one module per operation.

Each module holds its workflow's type name and ID function, its JSON input and result
(what users type at the Temporal CLI and read back), the payloads of its activities
with their typed references, and its error types, in the order `workflows/README.md`
documents them:

- `snapshot`         SnapshotVirtualMachine
- `delete_snapshot`  DeleteVirtualMachineSnapshot
- `restore`          RestoreVirtualMachine
- `clone`            CloneVirtualMachine
- `schedule`         ScheduledVirtualMachineSnapshots (what a vmsnap schedule starts)
- `sweep`            SweepOrphans

and the parts they share: `common` (the task queue, object references, shared error
types), `lock` (the per-VM operation lock), `reporting` (Events and metrics),
`activity` (`ActivityRef`). Pure: pydantic and `rules/` only, so the workflows, the
activities, the worker, the SDK and the CLI all import their names from here.
"""
