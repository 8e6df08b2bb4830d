"""kubectl against a simulator enforcing RBAC: the deploy/ manifests apply, and kubectl as
the worker's ServiceAccount discovers the API, is allowed what they grant and refused the
rest with kube-apiserver's own Forbidden message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from starter.local_stack import REPO_ROOT, start_simulator
from tests.conftest import SEEDS
from tests.support.enforced import WORKER_USER, refused_requests
from tests.support.sim import WORKER_ACCOUNT, Sim


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """RBAC enforced, the ServiceAccount given a token, but no policy of vmsnap's yet."""
    state = tmp_path_factory.mktemp("kubectl-rbac")
    namespace, account = WORKER_ACCOUNT.split("/")
    process = start_simulator(state, [SEEDS / "demo.yaml"], name="kubectl-rbac", rbac=True,
                              service_accounts=((namespace, account),))
    yield Sim(process, state)
    process.stop()


def as_worker(sim: Sim, *args: str) -> tuple[int, str]:
    done = sim.kubectl(*args, check=False, kubeconfig=sim.worker_kubeconfig)
    return done.returncode, (done.stdout + done.stderr).strip()


def forbidden(resource: str, verb: str, group: str, scope: str) -> str:
    return (f"Error from server (Forbidden): {resource} is forbidden: User \"{WORKER_USER}\" "
            f"cannot {verb} resource \"{resource.split('.')[0]}\" in API group \"{group}\" "
            f"{scope}")


def test_the_worker_is_refused_until_the_manifests_are_applied_then_only_beyond_them(
    sim: Sim,
) -> None:
    assert sim.worker_kubeconfig != sim.kubeconfig
    # Discovery works for any authenticated user (system:discovery), so kubectl gets as far
    # as the request itself.
    assert as_worker(sim, "get", "vmsnapsnapshots", "-n", "demo") == (
        1, forbidden("vmsnapsnapshots.vmsnap.io", "list", "vmsnap.io",
                     'in the namespace "demo"'))
    sim.kubectl("create", "namespace", "vmsnap")
    applied = sim.kubectl("apply", "-f", str(REPO_ROOT / "deploy" / "rbac")).stdout
    assert applied.split("\n")[:3] == [
        "clusterrole.rbac.authorization.k8s.io/vmsnap-worker created",
        "clusterrolebinding.rbac.authorization.k8s.io/vmsnap-worker created",
        "serviceaccount/vmsnap-worker created",
    ]
    assert as_worker(sim, "get", "vmsnapsnapshots", "-n", "demo") == (
        0, "No resources found in demo namespace.")
    assert as_worker(sim, "get", "vm", "-n", "demo", "-o", "name")[0] == 0
    # What the ClusterRole does not grant: VMIs are read one by one, never listed;
    # namespaces are not read at all.
    assert as_worker(sim, "get", "serviceaccounts", "-n", "demo") == (
        1, forbidden("serviceaccounts", "list", "", 'in the namespace "demo"'))
    assert as_worker(sim, "get", "namespaces") == (
        1, forbidden("namespaces", "list", "", "at the cluster scope"))
    assert as_worker(sim, "create", "namespace", "mine") == (
        1, forbidden("namespaces", "create", "", "at the cluster scope"))
    # The request log keeps each refusal and whose it was (what the e2e and fault suites
    # check after every stack).
    refused = refused_requests(sim)
    assert f"403 {WORKER_USER}: list /apis/vmsnap.io/v1alpha1/namespaces/demo/vmsnapsnapshots" \
        in refused
    assert f"403 {WORKER_USER}: create /api/v1/namespaces" in refused
    assert all(WORKER_USER in line for line in refused)


def test_the_bootstrap_policy_is_there_as_on_any_cluster(sim: Sim) -> None:
    rows = sim.kubectl("get", "clusterrolebindings", "-o", "wide").stdout.splitlines()
    by_name = {row.split()[0]: row.split() for row in rows[1:]}
    assert by_name["system:discovery"][1] == "ClusterRole/system:discovery"
    assert "system:authenticated" in by_name["system:discovery"]
    assert "system:masters" in by_name["cluster-admin"]
    code, said = as_worker(sim, "get", "--raw", "/sim/requests")
    assert code == 1
    assert said == (f'Error from server (Forbidden): forbidden: User "{WORKER_USER}" cannot get '
                    'path "/sim/requests"')
