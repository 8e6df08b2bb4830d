"""Instance types and preferences of a VM: their ControllerRevisions, and what they give a VMI.

Followed from kubevirt/kubevirt `pkg/instancetype` (controller/vm/controller.go
`Sync`, revision/store.go, find/*.go, preference/find/*.go, apply/cpu.go,
apply/memory.go, annotations/annotations.go) with the default
`referencePolicy: reference`:

- Before anything else the VM controller does, the instance type and the
  preference the VM names must be found: first the ControllerRevision named by
  `spec.instancetype.revisionName`, else the one `status.instancetypeRef`
  records (if it is for that name), else the object itself
  (`kind`: `VirtualMachineInstancetype` or, by default,
  `VirtualMachineClusterInstancetype`; preferences likewise). What is not found
  is the VM's `Failure` condition, reason `FailedFindInstancetype` /
  `FailedFindPreference`, message the API's NotFound
  (`controllerrevisions.apps "x" not found`), and the VM does not start.
- Otherwise a ControllerRevision of each is stored once, named
  `<vm>-<object>-<version>-<object uid>-<object generation>`, labelled
  `instancetype.kubevirt.io/object-{name,kind,uid,version,generation}`,
  controlled by the VM, `data` the object (apiVersion and kind set; labels,
  annotations, finalizers, owner references dropped); its name is recorded in
  `status.instancetypeRef.controllerRevisionRef.name` (and `preferenceRef`).
  KubeVirt at this commit records it in the status; `spec.*.revisionName` is
  only read (written by older KubeVirt releases, or by hand).
- A started VMI gets the instance type's guest CPUs as sockets, cores or
  threads as the preference prefers (sockets by default), its guest memory, and
  the annotations `kubevirt.io/(cluster-)instancetype-name`,
  `kubevirt.io/(cluster-)preference-name`.
"""

from __future__ import annotations

import copy
from typing import Any

from simulator.controllers.runtime import KUBEVIRT, Runtime
from simulator.errors import ApiError

GROUP = "instancetype.kubevirt.io"
VERSION = "v1beta1"
APPS = "apps"
LABEL = GROUP + "/object-"

# (matcher field, status field, namespaced plural, cluster plural, finder reason)
_INSTANCETYPE = (
    "instancetype",
    "instancetypeRef",
    ("virtualmachineinstancetype", "virtualmachineinstancetypes"),
    ("virtualmachineclusterinstancetype", "virtualmachineclusterinstancetypes"),
    "FailedFindInstancetype",
    "InstancetypeMatcher",
)
_PREFERENCE = (
    "preference",
    "preferenceRef",
    ("virtualmachinepreference", "virtualmachinepreferences"),
    ("virtualmachineclusterpreference", "virtualmachineclusterpreferences"),
    "FailedFindPreference",
    "PreferenceMatcher",
)
_KINDS = {
    "virtualmachineinstancetypes": "VirtualMachineInstancetype",
    "virtualmachineclusterinstancetypes": "VirtualMachineClusterInstancetype",
    "virtualmachinepreferences": "VirtualMachinePreference",
    "virtualmachineclusterpreferences": "VirtualMachineClusterPreference",
}


class SyncError(Exception):
    """A sync error of the VM controller: the VM's Failure condition reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def revision_name(vm_name: str, obj: dict[str, Any]) -> str:
    """revision.GenerateName."""
    meta = obj["metadata"]
    return f"{vm_name}-{meta['name']}-{VERSION}-{meta['uid']}-{meta.get('generation', 1)}"


class InstanceTypes:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # ---- finding ---------------------------------------------------------------------

    def _plural(self, vm: dict[str, Any], which: tuple[Any, ...]) -> str:
        field, _, namespaced, cluster, reason, matcher_name = which
        kind = str(((vm.get("spec") or {}).get(field) or {}).get("kind") or "").lower()
        if kind in namespaced:
            return namespaced[1]
        if kind in ("", *cluster):
            return cluster[1]
        raise SyncError(reason, f"got unexpected kind in {matcher_name}: "
                        f"{((vm.get('spec') or {}).get(field) or {}).get('kind')}")

    def _revision(self, vm: dict[str, Any], which: tuple[Any, ...]) -> dict[str, Any] | None:
        """The ControllerRevision find/revision.go reads; raises on a named one missing."""
        field, status_field, *_ = which
        reason = which[4]
        namespace = vm["metadata"].get("namespace", "")
        matcher = (vm.get("spec") or {}).get(field) or {}
        named = matcher.get("revisionName")
        if named:
            return self._get_revision(namespace, str(named), reason)
        ref = ((vm.get("status") or {}).get(status_field) or {}).get("controllerRevisionRef") or {}
        if ref.get("name"):
            found = self._get_revision(namespace, str(ref["name"]), reason)
            labels = found["metadata"].get("labels") or {}
            if labels.get(LABEL + "name") == matcher.get("name"):
                return found
        return None

    def _get_revision(self, namespace: str, name: str, reason: str) -> dict[str, Any]:
        found = self.rt.view(APPS, "controllerrevisions", namespace, name)
        if found is None:
            raise SyncError(reason, f'controllerrevisions.apps "{name}" not found')
        return found

    def _object(self, vm: dict[str, Any], which: tuple[Any, ...]) -> dict[str, Any]:
        field = which[0]
        plural = self._plural(vm, which)
        name = str(((vm.get("spec") or {}).get(field) or {}).get("name") or "")
        namespaced = plural in ("virtualmachineinstancetypes", "virtualmachinepreferences")
        namespace = vm["metadata"].get("namespace") if namespaced else None
        found = self.rt.view(GROUP, plural, namespace, name)
        if found is None:
            raise SyncError(which[4], f'{plural}.{GROUP} "{name}" not found')
        return found

    def spec_of(self, vm: dict[str, Any], which: tuple[Any, ...]) -> dict[str, Any] | None:
        """The instance type's (or preference's) spec, from its revision when there is one;
        None when the VM names none. Raises SyncError."""
        if not (vm.get("spec") or {}).get(which[0]):
            return None
        revision = self._revision(vm, which)
        if revision is not None:
            return dict(((revision.get("data") or {}).get("spec")) or {})
        return dict(self._object(vm, which).get("spec") or {})

    # ---- the VM controller's Sync ------------------------------------------------------

    def sync(self, vm: dict[str, Any]) -> dict[str, Any] | None:
        """checkResourcesExist, then Store: the VM status refs to write (None: nothing to
        write). Raises SyncError."""
        spec = vm.get("spec") or {}
        if not spec.get("instancetype") and not spec.get("preference"):
            return None
        for which in (_INSTANCETYPE, _PREFERENCE):
            self.spec_of(vm, which)
        refs: dict[str, Any] = {}
        for which in (_INSTANCETYPE, _PREFERENCE):
            ref = self._store(vm, which)
            if ref is not None:
                refs[which[1]] = ref
        return refs or None

    def _store(self, vm: dict[str, Any], which: tuple[Any, ...]) -> dict[str, Any] | None:
        """syncStatusWithMatcher: the status ref the matcher calls for; None if unchanged."""
        field, status_field = which[0], which[1]
        matcher = (vm.get("spec") or {}).get(field)
        if not matcher:
            return None
        current = dict((vm.get("status") or {}).get(status_field) or {})
        ref = copy.deepcopy(current)
        clear = False
        for key in ("name", "kind", "inferFromVolume"):
            if matcher.get(key) and matcher.get(key) != ref.get(key):
                ref[key] = matcher[key]
                clear = True
        if clear:
            ref.pop("controllerRevisionRef", None)
        policy = matcher.get("inferFromVolumeFailurePolicy")
        if policy and ref.get("inferFromVolumeFailurePolicy") != policy:
            ref["inferFromVolumeFailurePolicy"] = policy
        named = matcher.get("revisionName")
        if named and (ref.get("controllerRevisionRef") or {}).get("name") != named:
            ref["controllerRevisionRef"] = {"name": named}
        if not ref.get("controllerRevisionRef"):
            stored = self._create_revision(vm, which)
            ref["controllerRevisionRef"] = {"name": stored["metadata"]["name"]}
        return None if ref == current else ref

    def _create_revision(self, vm: dict[str, Any], which: tuple[Any, ...]) -> dict[str, Any]:
        """CreateControllerRevision / storeControllerRevision."""
        obj = self._object(vm, which)
        plural = self._plural(vm, which)
        kind = _KINDS[plural]
        meta = obj["metadata"]
        data_meta = {
            k: v for k, v in meta.items()
            if k not in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields")
        }
        data = {**copy.deepcopy(obj), "apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                "metadata": copy.deepcopy(data_meta)}
        vm_meta = vm["metadata"]
        name = revision_name(vm_meta["name"], obj)
        revision = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": vm_meta.get("namespace"),
                "ownerReferences": [{
                    "apiVersion": f"{KUBEVIRT}/v1",
                    "kind": "VirtualMachine",
                    "name": vm_meta["name"],
                    "uid": vm_meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }],
                "labels": {
                    LABEL + "generation": str(meta.get("generation", 1)),
                    LABEL + "kind": kind,
                    LABEL + "name": meta["name"],
                    LABEL + "uid": str(meta["uid"]),
                    LABEL + "version": VERSION,
                },
            },
            "data": data,
            "revision": 0,
        }
        try:
            return self.rt.create(APPS, "controllerrevisions", revision)
        except ApiError as exc:
            if exc.code != 409 or exc.reason != "AlreadyExists":
                raise SyncError("FailedCreate", "error encountered while storing "
                                "instancetype.kubevirt.io controllerRevisions: failed to create "
                                f"ControllerRevision: {exc.message}") from None
        existing = self.rt.view(APPS, "controllerrevisions", vm_meta.get("namespace"), name)
        if existing is None or (existing.get("data") or {}).get("spec") != data.get("spec"):
            raise SyncError("FailedCreate", "error encountered while storing "
                            "instancetype.kubevirt.io controllerRevisions: found existing "
                            f"ControllerRevision with unexpected data: {name}")
        return existing

    # ---- the VMI --------------------------------------------------------------------

    def apply(self, vm: dict[str, Any], vmi: dict[str, Any]) -> None:
        """ApplyToVMI for a new VMI: CPU topology, guest memory, the name annotations."""
        spec = vm.get("spec") or {}
        try:
            instancetype = self.spec_of(vm, _INSTANCETYPE)
            preference = self.spec_of(vm, _PREFERENCE)
        except SyncError:
            return
        annotations = vmi["metadata"].setdefault("annotations", {})
        for which, spec_field in ((_INSTANCETYPE, "instancetype"), (_PREFERENCE, "preference")):
            matcher = spec.get(spec_field)
            if not matcher:
                continue
            plural = self._plural(vm, which)
            cluster = plural.startswith("virtualmachinecluster")
            key = f"kubevirt.io/{'cluster-' if cluster else ''}{spec_field}-name"
            annotations[key] = str(matcher.get("name") or "")
        if instancetype is None:
            return
        domain = vmi.setdefault("spec", {}).setdefault("domain", {})
        guest = int(((instancetype.get("cpu") or {}).get("guest")) or 1)
        cpu = domain.setdefault("cpu", {})
        cpu.update({"cores": 1, "sockets": 1, "threads": 1})
        if guest != 1:
            topology = str(((preference or {}).get("cpu") or {}).get("preferredCPUTopology")
                           or "sockets")
            if topology in ("cores", "preferCores"):
                cpu["cores"] = guest
            elif topology in ("threads", "preferThreads"):
                cpu["threads"] = guest
            elif topology in ("spread", "preferSpread"):
                ratio = int((preference or {}).get("preferSpreadSocketToCoreRatio") or 2)
                cpu["cores"], cpu["sockets"] = ratio, guest // ratio
            else:
                cpu["sockets"] = guest
        memory = (instancetype.get("memory") or {}).get("guest")
        if memory is not None:
            domain.setdefault("memory", {})["guest"] = memory
