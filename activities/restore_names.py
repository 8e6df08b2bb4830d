"""Registered names of the restore activities (apart from their implementations, so that
workflow code names them without importing the Kubernetes client)."""

PREPARE_RESTORE = "prepare_restore"
CREATE_RESTORE_RECORD = "create_restore_record"
WRITE_RESTORE_STATUS = "write_restore_status"
ADD_SNAPSHOT_USER = "add_snapshot_user"
REMOVE_SNAPSHOT_USER = "remove_snapshot_user"
STOP_VM = "stop_vm_and_wait"
START_VM = "start_vm"
CREATE_RESTORED_PVCS = "create_restored_pvcs"
WAIT_RESTORED_PVCS_BOUND = "wait_restored_pvcs_bound"
DELETE_RESTORED_PVCS = "delete_restored_pvcs"
APPLY_RESTORED_VM = "apply_restored_vm"
PUT_BACK_VM = "put_back_vm"

# Error types (ApplicationError.type) of the restore, besides activities.errors'.
SNAPSHOT_NOT_READY = "SnapshotNotReady"
VM_RUNNING = "VmRunning"
TARGET_EXISTS = "TargetExists"
PVC_NOT_BOUND = "RestoredPvcNotBound"
VM_DID_NOT_STOP = "VmDidNotStop"

# CloneVirtualMachine
CHECK_CLONE_SOURCE = "check_clone_source"
PREPARE_CLONE = "prepare_clone"
CREATE_CLONE_VM = "create_clone_vm"
DELETE_CLONE_VM = "delete_clone_vm"
WRITE_CLONE_RECORD = "write_clone_record"
INVALID_CLONE_SPEC = "InvalidCloneSpec"
SOURCE_NOT_ELIGIBLE = "SourceNotEligible"
