"""The vmsnap worker: runs the workflows and activities on a Temporal task queue.

    python worker.py [--task-queue vmsnap]

Configuration from the environment, as the Temporal CLI reads it:
TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default
default), and the rest of Temporal's client profile (TEMPORAL_API_KEY,
TEMPORAL_TLS_*, TEMPORAL_PROFILE, temporal.toml); KUBECONFIG (else
~/.kube/config, else the in-cluster service account). SIGINT or SIGTERM
stop polling, let running activities finish (up to a grace period), and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.clone import CloneActivities
from activities.events import EventActivities
from activities.liveness import WorkflowLiveness
from activities.metrics import record_snapshot_metrics
from activities.restore import RestoreActivities
from activities.retention import RetentionActivities
from activities.snapshot import SnapshotActivities
from cluster.client import Cluster
from starter.connection import connect as connect_temporal
from starter.connection import load_connection_settings
from starter.metrics import runtime_from_environment
from starter.search_attributes import ensure_search_attributes
from workflows.clone import CloneVirtualMachine
from workflows.delete_snapshot import DeleteVirtualMachineSnapshot
from workflows.restore import RestoreVirtualMachine
from workflows.scheduled import ScheduledVirtualMachineSnapshots
from workflows.snapshot import SnapshotVirtualMachine

DEFAULT_TASK_QUEUE = "vmsnap"
MAX_CONCURRENT_ACTIVITIES = 32
GRACEFUL_SHUTDOWN = timedelta(seconds=10)
# Heartbeats reach the server at most this often: it bounds how late a cancelled
# activity (the cut wait, holding a frozen guest) learns of the cancellation.
MAX_HEARTBEAT_THROTTLE = timedelta(seconds=1)

WORKFLOWS: list[type] = [
    SnapshotVirtualMachine,
    DeleteVirtualMachineSnapshot,
    ScheduledVirtualMachineSnapshots,
    RestoreVirtualMachine,
    CloneVirtualMachine,
]

log = logging.getLogger("vmsnap.worker")


def activities_for(cluster: Cluster, liveness: WorkflowLiveness | None) -> list[Callable[..., Any]]:
    """Every activity, bound to one shared cluster adapter."""
    return [*SnapshotActivities(cluster, liveness).all(), *RetentionActivities(cluster).all(),
            *RestoreActivities(cluster, liveness).all(), *CloneActivities(cluster).all(),
            *EventActivities(cluster).all(), record_snapshot_metrics]


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
) -> Worker:
    """The worker with every workflow and activity; activities run on `executor` threads."""
    liveness = WorkflowLiveness(client, asyncio.get_running_loop())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(cluster, liveness),
        activity_executor=executor or ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES),
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        max_heartbeat_throttle_interval=MAX_HEARTBEAT_THROTTLE,
    )


async def run_worker(task_queue: str, stop: asyncio.Event) -> None:
    """Connect, serve until `stop` is set, then shut down gracefully."""
    cluster = Cluster.from_environment()
    # VMSNAP_METRICS_ADDRESS (e.g. 0.0.0.0:9464): Temporal's and vmsnap's Prometheus metrics.
    client = await connect(runtime=runtime_from_environment())
    log.info("connected to Temporal at %s, namespace %s",
             client.service_client.config.target_host, client.namespace)
    await ensure_search_attributes(client)
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES, thread_name_prefix="activity") as pool:
        worker = build_worker(client, cluster, task_queue, pool)
        async with worker:
            log.info("worker started: polling task queue %r (workflows: %s)", task_queue,
                     ", ".join(w.__name__ for w in WORKFLOWS))
            await stop.wait()
            log.info("stopping: finishing running activities (up to %ss)",
                     GRACEFUL_SHUTDOWN.total_seconds())
    cluster.close()
    log.info("worker stopped")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--task-queue", default=os.environ.get("VMSNAP_TASK_QUEUE",
                                                                 DEFAULT_TASK_QUEUE))
    parser.add_argument("--log-level", default=os.environ.get("VMSNAP_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python worker.py` and `vmsnap worker`; the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(args.task_queue, stop)

    try:
        asyncio.run(serve())
    except Exception as err:  # one clear line for the operator, the trace in debug
        log.debug("worker failed", exc_info=True)
        log.error("worker failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
