"""The registered names of the activities: what workflows call and test doubles register.

Kept apart from the implementations (which import the Kubernetes client) so
that workflow code can name an activity without importing it.
"""

CREATE_SNAPSHOT_RECORD = "create_snapshot_record"
LOCK_VM = "lock_vm"
LOCK_AND_INSPECT_VM = "lock_and_inspect_vm"
UNLOCK_VM = "unlock_vm"
INSPECT_VM = "inspect_vm"
WRITE_SNAPSHOT_STATUS = "write_snapshot_status"
UNFREEZE_VM = "unfreeze_vm"
FREEZE_AND_CUT = "freeze_and_cut"
CHECK_VOLUME_SNAPSHOTS_READY = "check_volume_snapshots_ready"
DELETE_VOLUME_SNAPSHOTS = "delete_volume_snapshots"
DELETE_SNAPSHOT_CONTENT = "delete_snapshot_content"
PREPARE_SNAPSHOT_DELETION = "prepare_snapshot_deletion"
DELETE_SNAPSHOT_RECORD = "delete_snapshot_record"
