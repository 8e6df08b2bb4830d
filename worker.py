"""The vmsnap worker: runs the workflows and activities on a Temporal task queue.

    python worker.py [--task-queue vmsnap]

Configuration from the environment, as the Temporal CLI reads it:
TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default
default), and the rest of Temporal's client profile (TEMPORAL_API_KEY,
TEMPORAL_TLS_*, TEMPORAL_PROFILE, temporal.toml); KUBECONFIG (else
~/.kube/config, else the in-cluster service account). The tenant boundary
(starter/boundary.py): VMSNAP_NAMESPACES (the Kubernetes namespaces served;
default all, with a warning), VMSNAP_CLONE_PATCH_ALLOW (paths a clone's patches
may touch beyond the default), VMSNAP_MAX_FREEZE_BUDGET (the longest a snapshot may
keep a guest frozen; default 1m, at most 5m), VMSNAP_MAX_FREEZES_IN_FLIGHT (guests
frozen at once by this worker, the others wait before their freeze; 0: as many as its
activities), VMSNAP_PRODUCTION (refuse to start without a payload codec key). SIGINT or SIGTERM
stop polling, let running activities finish (up to a grace period), and exit 0.

The cuts that freeze a guest run in the worker's freeze process (starter/freeze_process.py),
which it starts and stops: `worker.py --freeze-process`, polling the freeze task queue
(`{task queue}.freeze`) with VMSNAP_MAX_FREEZES_IN_FLIGHT activity slots and nothing else.

At start-up the worker creates the orphan sweeper's Temporal Schedule
(`vmsnap-sweeper-{task queue}`, SweepOrphans over all namespaces, overlap
skip) if it is missing: VMSNAP_SWEEPER_SCHEDULE=off opts out,
VMSNAP_SWEEPER_INTERVAL (default 1h) and VMSNAP_SWEEPER_GRACE (default 1h)
set it up. An existing schedule is left as it is (edit or delete it with the
Temporal CLI). Its creation time is the sweeper's install: orphans made before it
are only reported unless a sweep includes them (contracts.sweep).
It also follows every snapshot record's truth (readiness that comes late,
a VolumeSnapshot deleted or in error: `cluster.record_reconciler`) with two watches;
VMSNAP_RECORD_RECONCILER=off opts out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.admission import AdmissionActivities
from activities.clone import CloneActivities
from activities.events import EventActivities
from activities.liveness import WorkflowLiveness
from activities.metrics import record_snapshot_metrics
from activities.request_priority import request_priority_interceptors
from activities.restore import RestoreActivities
from activities.retention import RetentionActivities
from activities.snapshot import SnapshotActivities
from activities.sweeper import SweeperActivities, WorkflowStates
from cluster.client import Cluster
from cluster.errors import ClusterError
from cluster.identity import configured_cluster_id
from cluster.record_reconciler import RecordReconciler
from contracts.common import TASK_QUEUE as DEFAULT_TASK_QUEUE
from contracts.common import freeze_task_queue
from contracts.sweep import (
    DEFAULT_GRACE_SECONDS,
    SweepOrphansInput,
    sweep_workflow_id,
    sweeper_schedule_id,
)
from contracts.sweep import WORKFLOW as SWEEP_WORKFLOW
from rules.cluster_identity import task_queue_for
from rules.durations import parse_duration
from rules.namespace_scope import NamespaceScope
from starter.boundary import WorkerBoundary
from starter.connection import connect as connect_temporal
from starter.connection import load_connection_settings
from starter.freeze_process import FreezeProcess, FreezeProcessError, die_with_parent, signal_ready
from starter.metrics import runtime_from_environment
from starter.search_attributes import ensure_search_attributes
from starter.worker_tuning import DEFAULT_MAX_CONCURRENT_ACTIVITIES, WorkerTuning
from workflows.clone import CloneVirtualMachine
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.one_input import ExactlyOneInput
from workflows.restore import RestoreVirtualMachine
from workflows.scheduled import ScheduledVirtualMachineSnapshots
from workflows.snapshot import SnapshotVirtualMachine
from workflows.sweeper import SweepOrphans

MAX_CONCURRENT_ACTIVITIES = DEFAULT_MAX_CONCURRENT_ACTIVITIES  # settable: starter/worker_tuning.py
GRACEFUL_SHUTDOWN = timedelta(seconds=10)
# Heartbeats reach the server at most this often (the SDK's throttle is the smaller of
# this and 0.8 x an activity's heartbeat timeout): it bounds how late a cancelled activity
# (the cut wait, holding a frozen guest) learns of the cancellation, and it leaves the
# cut's 1.5 s heartbeat timeout (workflows.snapshot.CUT_HEARTBEAT) room for a late
# heartbeat or two before the server hands a live worker's cut to another.
MAX_HEARTBEAT_THROTTLE = timedelta(milliseconds=250)

WORKFLOWS: list[type] = [
    SnapshotVirtualMachine,
    DeleteVirtualMachineSnapshot,
    ScheduledVirtualMachineSnapshots,
    RestoreVirtualMachine,
    CloneVirtualMachine,
    SweepOrphans,
]
DEFAULT_SWEEP_INTERVAL_SECONDS = 3600.0

log = logging.getLogger("vmsnap.worker")


def activities_for(
    cluster: Cluster, liveness: WorkflowLiveness | None, states: WorkflowStates | None = None,
    boundary: WorkerBoundary | None = None,
) -> list[Callable[..., Any]]:
    """Every activity, bound to one shared cluster adapter and the worker's boundary (the
    cut too: a run begun before the freeze task queue cuts on the worker's own queue)."""
    boundary = boundary or WorkerBoundary.from_environment(os.environ)
    return [*AdmissionActivities(boundary.scope, boundary.policy,
                                         lambda: cluster.cluster_id,
                                         boundary.max_freeze_budget).all(),
            *SnapshotActivities(cluster, liveness, boundary.max_freeze_budget).all(),
            *RetentionActivities(cluster).all(),
            *RestoreActivities(cluster, liveness).all(),
            *CloneActivities(cluster, boundary.policy).all(),
            *EventActivities(cluster).all(),
            *SweeperActivities(cluster, states, boundary.scope).all(),
            record_snapshot_metrics]


def freeze_activities(
    cluster: Cluster, boundary: WorkerBoundary | None = None,
) -> list[Callable[..., Any]]:
    """What the freeze process serves: the cut, bound to its own cluster adapter and the
    worker's maximum freeze budget."""
    boundary = boundary or WorkerBoundary.from_environment(os.environ)
    return [SnapshotActivities(cluster, None, boundary.max_freeze_budget).freeze_and_cut]


async def connect(
    address: str | None = None, namespace: str | None = None, runtime: Runtime | None = None
) -> Client:
    """The client every vmsnap process uses: environment or profile, TLS or API key, the
    pydantic converter, and the payload codec when a key is configured."""
    settings = load_connection_settings(address=address, namespace=namespace)
    return await connect_temporal(settings, runtime=runtime)


def build_worker(
    client: Client,
    cluster: Cluster,
    task_queue: str = DEFAULT_TASK_QUEUE,
    executor: ThreadPoolExecutor | None = None,
    tuning: WorkerTuning | None = None,
    boundary: WorkerBoundary | None = None,
) -> Worker:
    """The worker with every workflow and activity; activities run on `executor` threads."""
    tuning = tuning or WorkerTuning.from_environment(os.environ)
    boundary = boundary or WorkerBoundary.from_environment(os.environ)
    loop = asyncio.get_running_loop()
    liveness = WorkflowLiveness(client, loop)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(cluster, liveness, WorkflowStates(client, loop), boundary),
        activity_executor=executor or ThreadPoolExecutor(tuning.activity_threads),
        **tuning.worker_options(),
        **shared_worker_options(),
        # A start with no input or two fails at once instead of retrying its workflow task.
        interceptors=[*request_priority_interceptors(), ExactlyOneInput()],
    )


def build_freeze_worker(
    client: Client,
    cluster: Cluster,
    task_queue: str = DEFAULT_TASK_QUEUE,
    executor: ThreadPoolExecutor | None = None,
    tuning: WorkerTuning | None = None,
    boundary: WorkerBoundary | None = None,
    identity: str | None = None,
) -> Worker:
    """The worker of `task_queue`'s freeze task queue: only the cut, one activity slot per
    guest it may hold frozen (`tuning.freeze_slots`); snapshots beyond wait in the queue."""
    tuning = tuning or WorkerTuning.from_environment(os.environ)
    return Worker(
        client,
        task_queue=freeze_task_queue(task_queue),
        activities=freeze_activities(cluster, boundary),
        activity_executor=executor or ThreadPoolExecutor(tuning.freeze_slots),
        max_concurrent_activities=tuning.freeze_slots,
        **shared_worker_options(),
        interceptors=request_priority_interceptors(),
        identity=identity,
    )


def shared_worker_options() -> dict[str, Any]:
    """What the worker and its freeze process share: the same grace period to finish
    running activities, and the same heartbeat throttle, which bounds how late a cut
    learns of its cancellation. (Both run the request priority interceptor: Kubernetes
    requests of earlier-started runs go first under VMSNAP_KUBE_QPS.)"""
    return {"graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
            "max_heartbeat_throttle_interval": MAX_HEARTBEAT_THROTTLE}


def sweeper_schedule(
    task_queue: str, cluster_id: str, environ: dict[str, str] | None = None
) -> Schedule | None:
    """The sweeper's schedule as the environment configures it; None when opted out.

    A bad VMSNAP_SWEEPER_INTERVAL or VMSNAP_SWEEPER_GRACE is a ValueError naming it.
    """
    env = dict(os.environ if environ is None else environ)
    switch = env.get("VMSNAP_SWEEPER_SCHEDULE", "on").strip().lower()
    if switch in ("off", "false", "0", "no"):
        return None
    if switch not in ("on", "true", "1", "yes", ""):
        raise ValueError(f"VMSNAP_SWEEPER_SCHEDULE must be on or off, not {switch!r}")
    values: dict[str, float] = {}
    for name, default in (("VMSNAP_SWEEPER_INTERVAL", DEFAULT_SWEEP_INTERVAL_SECONDS),
                          ("VMSNAP_SWEEPER_GRACE", DEFAULT_GRACE_SECONDS)):
        try:
            values[name] = parse_duration(env[name]) if env.get(name) else default
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    interval = values["VMSNAP_SWEEPER_INTERVAL"]
    if interval < 60:
        raise ValueError(f"VMSNAP_SWEEPER_INTERVAL must be at least 1m, not {interval}s")
    request = SweepOrphansInput(all_namespaces=True, grace=values["VMSNAP_SWEEPER_GRACE"])
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SWEEP_WORKFLOW, request, id=sweep_workflow_id(cluster_id, [], True),
            task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=f"created by the vmsnap worker: orphan sweep every "
                                 f"{interval:.0f}s, grace {request.grace:.0f}s"))


async def ensure_sweeper_schedule(
    client: Client, task_queue: str, cluster_id: str, environ: dict[str, str] | None = None
) -> str | None:
    """Create the sweeper's schedule if missing; its ID, or None when opted out.

    A failure to create it is logged, not fatal: sweeping can still be started
    on demand, and snapshots must not wait on it.
    """
    schedule = sweeper_schedule(task_queue, cluster_id, environ)
    if schedule is None:
        log.info("orphan sweeper schedule: off (VMSNAP_SWEEPER_SCHEDULE)")
        return None
    sid = sweeper_schedule_id(task_queue)
    try:
        await client.create_schedule(sid, schedule)
        log.info("orphan sweeper schedule %s created", sid)
    except ScheduleAlreadyRunningError:
        log.info("orphan sweeper schedule %s already exists", sid)
    except Exception as err:  # RPC or permission errors: keep serving
        log.warning("could not create the orphan sweeper schedule %s: %s", sid, err)
    return sid


async def start_record_reconciler(
    cluster: Cluster, environ: Mapping[str, str] | None = None,
    scope: NamespaceScope | None = None,
) -> RecordReconciler | None:
    """Follow the snapshot records' truth (cluster.record_reconciler) unless opted out
    (`VMSNAP_RECORD_RECONCILER=off`), in the namespaces the worker serves. A failure to
    start it is logged, not fatal: the workflows do not depend on it."""
    setting = (environ if environ is not None else os.environ).get(
        "VMSNAP_RECORD_RECONCILER", "on").strip().lower()
    if setting in ("off", "false", "0", "no"):
        log.info("snapshot record reconciler: off (VMSNAP_RECORD_RECONCILER)")
        return None
    scope = scope or NamespaceScope()
    reconciler = RecordReconciler(cluster, None if scope.everything else scope.listed())
    try:
        await asyncio.to_thread(reconciler.start)
    except ClusterError as err:
        log.warning("snapshot record reconciler not started: %s", err)
        reconciler.close()
        return None
    log.info("snapshot record reconciler: following records and VolumeSnapshots")
    return reconciler


async def run_freeze_worker(task_queue: str, stop: asyncio.Event, parent_pid: int,
                            ready_fd: int | None = None) -> None:
    """The freeze process (starter/freeze_process.py): serve `task_queue`'s freeze task
    queue until `stop` or the worker's end. Its identity is the worker's (`{worker
    pid}@{host}`) with ` freeze`: the Temporal UI names the worker that holds a guest."""
    watch = die_with_parent(parent_pid, stop)
    tuning = WorkerTuning.from_environment(os.environ)
    boundary = WorkerBoundary.from_environment(os.environ)
    # Its own watch-fed copy of the PVCs the cuts check (cluster.informer): no request
    # for them per cut, as in the worker.
    cluster = Cluster.from_environment(cache_reads=True)
    client = await connect()
    identity = f"{parent_pid}@{socket.gethostname()} freeze"
    with ThreadPoolExecutor(tuning.freeze_slots, thread_name_prefix="freeze") as pool:
        worker = build_freeze_worker(client, cluster, task_queue, pool, tuning, boundary,
                                     identity)
        async with worker:
            # Not "worker started": that line says the whole worker polls.
            log.info("freeze process ready: polling task queue %r, %d guests frozen at once",
                     freeze_task_queue(task_queue), tuning.freeze_slots)
            signal_ready(ready_fd)
            await stop.wait()
            log.info("freeze process stopping: finishing running cuts (up to %ss)",
                     GRACEFUL_SHUTDOWN.total_seconds())
    watch.cancel()
    cluster.close()


def freeze_process_argv(task_queue: str, log_level: str) -> list[str]:
    """How the worker starts its freeze process: this file, run again."""
    return [sys.executable, os.path.abspath(__file__), "--freeze-process",
            "--task-queue", task_queue, "--log-level", log_level]


async def spawn_freeze_process(task_queue: str, log_level: str) -> FreezeProcess:
    """The worker's freeze process, started; `ready()` waits until it polls."""
    freezer = FreezeProcess(freeze_process_argv(task_queue, log_level))
    await freezer.spawn()
    return freezer


async def run_worker(task_queue: str | None, stop: asyncio.Event,
                     log_level: str = "INFO") -> None:
    """Connect, serve until `stop` is set, then shut down gracefully. Without a task
    queue, the cluster's own (`vmsnap-{cluster id}`, rules.cluster_identity)."""
    configured_cluster_id()  # a bad VMSNAP_CLUSTER_ID: refuse before connecting
    sweeper_schedule(task_queue or DEFAULT_TASK_QUEUE, "")  # likewise bad VMSNAP_SWEEPER_*
    tuning = WorkerTuning.from_environment(os.environ)  # likewise bad VMSNAP_MAX_* settings
    boundary = WorkerBoundary.from_environment(os.environ)  # and the tenant boundary's
    boundary.announce()
    # Watch-fed copies of the PVCs and classes every snapshot reads (cluster.informer).
    cluster = Cluster.from_environment(cache_reads=True)
    # The freeze process imports, connects and starts polling while the worker sets up:
    # at once when the task queue is given, else once the cluster's id names it.
    freezer: FreezeProcess | None = None
    reconciler: RecordReconciler | None = None
    try:
        if task_queue:
            freezer = await spawn_freeze_process(task_queue, log_level)
        cluster_id = await asyncio.to_thread(lambda: cluster.cluster_id)
        task_queue = task_queue or task_queue_for(cluster_id)
        log.info("cluster id: %s", cluster_id)
        freezer = freezer or await spawn_freeze_process(task_queue, log_level)
        # VMSNAP_METRICS_ADDRESS (e.g. 0.0.0.0:9464): Temporal's and vmsnap's Prometheus
        # metrics.
        client = await connect(runtime=runtime_from_environment())
        log.info("connected to Temporal at %s, namespace %s",
                 client.service_client.config.target_host, client.namespace)
        await ensure_search_attributes(client)
        await ensure_sweeper_schedule(client, task_queue, cluster_id)
        reconciler = await start_record_reconciler(cluster, scope=boundary.scope)
        log.info("worker tuning: %s", tuning.describe())
        await freezer.ready()
        with ThreadPoolExecutor(tuning.activity_threads, thread_name_prefix="activity") as pool:
            worker = build_worker(client, cluster, task_queue, pool, tuning, boundary)
            async with worker:
                log.info("worker started: polling task queue %r (workflows: %s)", task_queue,
                         ", ".join(w.__name__ for w in WORKFLOWS))
                ended = asyncio.create_task(freezer.ended())
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                ended.cancel()
                if not stop.is_set():
                    raise FreezeProcessError(
                        f"the freeze process ended (exit {await freezer.ended()}): the "
                        "worker stops, a worker that cannot freeze must not serve")
                log.info("stopping: finishing running activities (up to %ss)",
                         GRACEFUL_SHUTDOWN.total_seconds())
                freezer.terminate()  # both finish their running activities at once
    finally:
        if freezer is not None:
            await freezer.stop()
        if reconciler is not None:
            reconciler.close()
        cluster.close()
    log.info("worker stopped")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--task-queue", default=os.environ.get("VMSNAP_TASK_QUEUE") or None,
        help="the task queue to poll (default: $VMSNAP_TASK_QUEUE, else vmsnap-{cluster id})")
    parser.add_argument("--log-level", default=os.environ.get("VMSNAP_LOG_LEVEL", "INFO"))
    # The worker's own freeze process (starter/freeze_process.py), not for operators.
    parser.add_argument("--freeze-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python worker.py` and `vmsnap worker`; the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if args.freeze_process:
            # The worker stops it (SIGTERM); a Ctrl-C to the terminal reaches the worker.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            if args.task_queue is None or args.parent_pid is None:
                raise ValueError("--freeze-process is started by the worker, with "
                                 "--task-queue and --parent-pid")
            await run_freeze_worker(args.task_queue, stop, args.parent_pid, args.ready_fd)
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(args.task_queue, stop, args.log_level)

    try:
        asyncio.run(serve())
    except Exception as err:  # one clear line for the operator, the trace in debug
        log.debug("worker failed", exc_info=True)
        log.error("worker failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
