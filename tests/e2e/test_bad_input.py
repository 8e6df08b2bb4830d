"""Hostile and malformed input through the Temporal CLI, as a careless or hostile user would
type it, against a running stack (dev server, simulator, worker serving one namespace):
every run ends Failed within seconds with a clear error type and message, and the
cluster is byte for byte as it was, with no write request from the worker.

One stack; every workflow is started at once (`temporal workflow start`), then each is
awaited and checked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from starter.local_stack import REPO_ROOT, DevServerProcess
from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.e2e

TEMPORAL = REPO_ROOT / ".venv" / "bin" / "temporal"
NS = "demo"  # the namespace the worker serves
VOLUMES = "/spec/template/spec/volumes"
STARTS_AT_ONCE = 8  # CLI processes at a time (the machine's cores are shared)


@dataclass(frozen=True)
class Case:
    name: str
    workflow: str
    inputs: tuple[str, ...]  # each a --input; () none, two: doubled
    error_type: str
    says: str

    @property
    def workflow_id(self) -> str:
        return f"bad-input/{self.name}"


def json_input(**fields: Any) -> tuple[str, ...]:
    return (json.dumps(fields),)


SNAPSHOT = {"namespace": NS, "vm": "web-1"}
RESTORE = {"namespace": NS, "snapshot": "web-1-snap"}
CLONE = {"namespace": NS, "source_snapshot": "web-1-snap", "target": "copy"}
SCHEDULE = {"schedule": "nightly", "namespace": NS, "vm": "web-1", "keep": 3}


def snapshot(case: str, error_type: str, says: str, **fields: Any) -> Case:
    return Case(case, "SnapshotVirtualMachine", json_input(**{**SNAPSHOT, **fields}),
                error_type, says)


def restore(case: str, error_type: str, says: str, **fields: Any) -> Case:
    return Case(case, "RestoreVirtualMachine", json_input(**{**RESTORE, **fields}),
                error_type, says)


def clone(case: str, error_type: str, says: str, **fields: Any) -> Case:
    return Case(case, "CloneVirtualMachine", json_input(**{**CLONE, **fields}),
                error_type, says)


def patched(name: str, says: str, *operations: dict[str, Any]) -> Case:
    return clone(f"patch-{name}", "PatchNotAllowed", says,
                 patches=[json.dumps(list(operations))])


def add_volume(kind: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"op": "add", "path": f"{VOLUMES}/-", "value": {"name": "x", kind: source}}


def add_key(path: str, key: str, value: str = "x") -> dict[str, Any]:
    return {"op": "add", "path": f"{path}/{key.replace('/', '~1')}", "value": value}


INVALID = "ValidationError"
CASES: list[Case] = [
    # durations: oversized, negative, not finite, not a duration, below the floor
    snapshot("deadline-1e308", INVALID, "too long", failure_deadline=1e308),
    snapshot("deadline-25h", INVALID, "too long", failure_deadline="25h"),
    snapshot("deadline-negative", INVALID, "negative", failure_deadline=-5),
    snapshot("deadline-nan", INVALID, "invalid duration", failure_deadline="NaN"),
    snapshot("deadline-infinity", INVALID, "invalid duration", failure_deadline="Infinity"),
    snapshot("deadline-exponent", INVALID, "invalid duration", failure_deadline="1e400"),
    Case("deadline-1e400-number", "SnapshotVirtualMachine",
         ('{"namespace": "demo", "vm": "web-1", "failure_deadline": 1e400}',), INVALID,
         "not a finite number"),
    snapshot("ready-deadline-centuries", INVALID, "too long", ready_deadline="876000h"),
    restore("bound-wait-1e308", INVALID, "too long", bound_wait=1e308),
    restore("bound-wait-zero", INVALID, "too short", bound_wait=0),
    restore("stop-wait-negative", INVALID, "negative", stop_wait=-1),
    restore("grace-too-long", INVALID, "too long", target_ready_grace="1000h"),
    clone("clone-bound-wait-nan", INVALID, "invalid duration", bound_wait="NaN"),
    Case("sweep-grace-too-long", "SweepOrphans",
         json_input(namespaces=[NS], grace="9999h"), INVALID, "too long"),
    Case("schedule-deadline-too-long", "ScheduledVirtualMachineSnapshots",
         json_input(**SCHEDULE, failure_deadline=1e12), INVALID, "too long"),
    # names: dots, slashes, upper case, 300 characters
    snapshot("namespace-dots", INVALID, "not a valid name", namespace="de.mo"),
    snapshot("vm-slash", INVALID, "not a valid name", vm="web-1/../kube-system"),
    snapshot("namespace-upper", INVALID, "not a valid name", namespace="DEMO"),
    snapshot("name-300", INVALID, "at most 253", name="x" * 300),
    restore("target-dots", INVALID, "not a valid name", target="web.copy"),
    restore("snapshot-slash", INVALID, "not a valid name", snapshot="a/b"),
    clone("target-upper", INVALID, "not a valid name", target="Copy"),
    clone("target-300", INVALID, "at most 63", target="c" * 300),
    Case("delete-name-upper", "DeleteVirtualMachineSnapshot",
         json_input(namespace=NS, name="Snap"), INVALID, "not a valid name"),
    # unknown fields, wrong types, not an object
    snapshot("unknown-field", INVALID, "Extra inputs", failureDeadline="5m"),
    restore("unknown-field-restore", INVALID, "Extra inputs", snapshotName="x"),
    snapshot("namespace-number", INVALID, "string", namespace=5),
    restore("bool-maybe", INVALID, "bool", keep_identity="maybe"),
    clone("patches-object", INVALID, "list", patches={"op": "add"}),
    Case("input-list", "SnapshotVirtualMachine", ("[]",), INVALID, "SnapshotVirtualMachine"),
    Case("input-string", "RestoreVirtualMachine", ('"demo"',), INVALID,
         "RestoreVirtualMachine"),
    # missing and doubled inputs
    Case("input-missing", "SnapshotVirtualMachine", (), INVALID, "exactly one input"),
    Case("input-doubled", "CloneVirtualMachine", json_input(**CLONE) * 2, INVALID,
         "exactly one input"),
    # reserved labels
    snapshot("label-vmsnap", INVALID, "reserved", labels={"vmsnap.io/restore": "x"}),
    snapshot("label-schedule", INVALID, "reserved",
             labels={"schedule.vmsnap.io/name": "nightly"}),
    Case("schedule-label", "ScheduledVirtualMachineSnapshots",
         json_input(**SCHEDULE, labels={"schedule.vmsnap.io/name": "other"}), INVALID,
         "reserved"),
    snapshot("schedule-by-a-client", INVALID, "only a schedule's run", schedule="nightly"),
    # namespaces outside the served set
    snapshot("unserved-kube-system", "NamespaceNotServed", "'kube-system' is not served",
             namespace="kube-system"),
    restore("unserved-restore", "NamespaceNotServed", "is not served", namespace="team-b"),
    clone("unserved-clone", "NamespaceNotServed", "is not served", namespace="default"),
    Case("unserved-delete", "DeleteVirtualMachineSnapshot",
         json_input(namespace="kube-system", name="x"), "NamespaceNotServed", "is not served"),
    Case("unserved-schedule", "ScheduledVirtualMachineSnapshots",
         json_input(**{**SCHEDULE, "namespace": "kube-system"}), "NamespaceNotServed",
         "is not served"),
    Case("unserved-sweep", "SweepOrphans", json_input(namespaces=["kube-system", NS]),
         "NamespaceNotServed", "is not served"),
    # patches to every refused path
    patched("service-account", "serviceAccount volume",
            add_volume("serviceAccount", {"serviceAccountName": "admin"})),
    patched("secret", "secret volume", add_volume("secret", {"secretName": "db"})),
    patched("config-map", "configMap volume", add_volume("configMap", {"name": "cfg"})),
    patched("downward-api", "downwardAPI volume",
            add_volume("downwardAPI", {"fields": [{"path": "x"}]})),
    patched("downward-metrics", "downwardMetrics volume",
            add_volume("downwardMetrics", {"x": 1})),
    patched("host-disk", "hostDisk volume",
            add_volume("hostDisk", {"path": "/", "type": "Disk"})),
    patched("sysprep", "sysprep volume", add_volume("sysprep", {"secret": {"name": "s"}})),
    patched("user-data-secret", "from a Secret",
            {"op": "add", "path": f"{VOLUMES}/0/cloudInitNoCloud/userDataSecretRef",
             "value": {"name": "s"}}),
    patched("network-data-secret", "from a Secret",
            {"op": "add", "path": f"{VOLUMES}/0/cloudInitConfigDrive/networkDataSecretRef",
             "value": {"name": "s"}}),
    patched("access-credentials", "accessCredentials",
            {"op": "add", "path": "/spec/template/spec/accessCredentials",
             "value": [{"sshPublicKey": {"source": {"secret": {"secretName": "k"}}}}]}),
    patched("hook-sidecar", "sidecar",
            add_key("/metadata/annotations", "hooks.kubevirt.io/hookSidecars", "[]")),
    patched("pod-hook-sidecar", "sidecar",
            add_key("/spec/template/metadata/annotations", "hooks.kubevirt.io/hookSidecars")),
    patched("istio-sidecar", "sidecar",
            add_key("/spec/template/metadata/annotations", "sidecar.istio.io/inject", "true")),
    patched("apparmor", "configures the VM's pod",
            add_key("/spec/template/metadata/annotations",
                    "container.apparmor.security.beta.kubernetes.io/compute", "unconfined")),
    patched("vmsnap-label", "vmsnap's own", add_key("/metadata/labels", "vmsnap.io/clone")),
    patched("schedule-label", "vmsnap's own",
            add_key("/metadata/labels", "schedule.vmsnap.io/name", "nightly")),
    patched("vmsnap-annotation", "vmsnap's own",
            add_key("/metadata/annotations", "vmsnap.io/lock")),
    patched("namespace", "allowlist",
            {"op": "replace", "path": "/metadata/namespace", "value": "kube-system"}),
    patched("name", "allowlist", {"op": "replace", "path": "/metadata/name", "value": "x"}),
    patched("status", "allowlist", {"op": "add", "path": "/status/x", "value": 1}),
    patched("node-selector", "allowlist",
            add_key("/spec/template/spec/nodeSelector", "kubernetes.io/hostname", "node-1")),
    clone("patch-not-json", "InvalidCloneSpec", "not JSON", patches=["{nope"]),
    clone("patches-too-many", INVALID, "at most 64", patches=["{}"] * 65),
    clone("both-sources", INVALID, "exactly one of", source_vm="web-1"),
    clone("bad-mac", INVALID, "not a MAC address",
          new_mac_addresses={"default": "02:00:00:00:00"}),
]


@dataclass
class Outcome:
    case: Case
    cli_returncode: int
    cli_output: str
    failure: ApplicationError | None = None
    seconds: float | None = None
    other: list[str] = field(default_factory=list)


def cluster_state(stack: Stack) -> str:
    """Every object of every kind the simulator serves, in every namespace, as JSON."""
    kinds = stack.sim.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    dumps = {kind: stack.sim.kubectl("get", kind, "-A", "-o", "json").stdout for kind in kinds
             if kind not in ("events", "events.events.k8s.io")}
    return json.dumps(dumps, sort_keys=True)


@pytest.fixture(scope="module")
def guarded_stack(start_stack: StartStack) -> Iterator[Stack]:
    stack = start_stack(extra_env={"VMSNAP_NAMESPACES": NS})
    yield stack
    stack.worker.stop()
    stack.sim.process.stop()


async def start_with_the_cli(server: DevServerProcess, stack: Stack, case: Case,
                             slots: asyncio.Semaphore) -> Outcome:
    args = [str(TEMPORAL), "workflow", "start", "--address", server.address,
            "--namespace", server.namespace, "--task-queue", stack.task_queue,
            "--type", case.workflow, "--workflow-id", case.workflow_id]
    for document in case.inputs:
        args += ["--input", document]
    async with slots:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
    return Outcome(case, process.returncode or 0, output.decode(errors="replace"))


async def await_failure(stack: Stack, outcome: Outcome) -> Outcome:
    handle = stack.client.get_workflow_handle(outcome.case.workflow_id)
    try:
        await asyncio.wait_for(handle.result(), timeout=60)
        outcome.other.append("completed instead of failing")
    except WorkflowFailureError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError):
            outcome.failure = cause
        else:
            outcome.other.append(f"failed with {type(cause).__name__}: {cause}")
    except TimeoutError:
        outcome.other.append("still running after 60s")
    description = await handle.describe()
    if description.close_time is not None:
        outcome.seconds = (description.close_time - description.start_time).total_seconds()
    return outcome


def requests_by_the_worker(stack: Stack, since: int) -> list[dict[str, Any]]:
    answer = stack.sim.request("GET", f"/sim/requests?since={since}")
    return list(answer["items"])


async def test_hostile_input_fails_fast_and_changes_nothing(
    dev_server: DevServerProcess, guarded_stack: Stack,
) -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    stack = guarded_stack
    before = await asyncio.to_thread(cluster_state, stack)
    mark = (await asyncio.to_thread(stack.sim.request, "GET", "/sim/requests"))["next"]
    slots = asyncio.Semaphore(STARTS_AT_ONCE)
    started = await asyncio.gather(*(start_with_the_cli(dev_server, stack, c, slots)
                                     for c in CASES))
    assert all(o.cli_returncode == 0 for o in started), "\n".join(
        f"{o.case.name}: {o.cli_output}" for o in started if o.cli_returncode)
    outcomes = await asyncio.gather(*(await_failure(stack, o) for o in started))

    wrong = []
    for outcome in outcomes:
        case, failure = outcome.case, outcome.failure
        if outcome.other:
            wrong.append(f"{case.name}: {'; '.join(outcome.other)}")
        elif failure is None or failure.type != case.error_type or \
                case.says not in failure.message:
            wrong.append(f"{case.name}: expected {case.error_type} saying {case.says!r}, got "
                         f"{failure.type if failure else None}: "
                         f"{failure.message if failure else ''}")
        elif outcome.seconds is None or outcome.seconds > 10:
            wrong.append(f"{case.name}: took {outcome.seconds}s to fail")
    assert not wrong, "\n".join(wrong)

    writes = [r for r in await asyncio.to_thread(requests_by_the_worker, stack, mark)
              if r.get("verb") not in ("get", "list", "watch")]
    assert writes == [], writes
    after = await asyncio.to_thread(cluster_state, stack)
    assert after == before, "the cluster changed"
    print(f"{len(CASES)} hostile inputs refused; slowest "
          f"{max(o.seconds or 0 for o in outcomes):.2f}s")


def test_every_case_is_told_apart() -> None:
    """Workflow IDs are unique and stay within Temporal's limits."""
    ids = [c.workflow_id for c in CASES]
    assert len(set(ids)) == len(ids) and all(len(i) < 200 for i in ids)
