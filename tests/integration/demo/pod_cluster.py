"""A cluster as `vmbmc demo` runs one, inside the test process: the emulator (RBAC and TLS on, the
project's CRDs) whose kubelet is a LocalPodRunner that runs each pod as a local process under its own
ServiceAccount's token, the namespaces asked for, and a kubeconfig for a controller that holds exactly
deploy/rbac.yaml's rights. The caller runs the controller (a ControllerThread) with it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from machine_cluster import ROOT, crd_files

from vmbmc_devcluster.demo.identity import install_controller_identity
from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.emulator.harness import EmulatorThread


class PodCluster(NamedTuple):
    emu: EmulatorThread
    runner: LocalPodRunner
    controller_kubeconfig: Path


@contextmanager
def pod_cluster(tmp: Path, first_address: int, namespaces: Sequence[str]) -> Iterator[PodCluster]:
    """Pods get loopback addresses of 127.10.0.0/16 from number `first_address` on (tests that run at
    once keep apart);
    their work directories are under <tmp>/work/pods. KubeVirt starts and stops VMs in 0.2 s."""
    kubeconfig = tmp / "kubeconfig"
    runner = LocalPodRunner(str(kubeconfig), tmp / "work", first_address=first_address, images=["vmbmc:dev"])
    with EmulatorThread(
        kubeconfig=kubeconfig,
        crds=crd_files(),
        pod_runner=runner,
        kubevirt_options={"start_delay": 0.2, "stop_delay": 0.2},
    ) as emu:
        runner.attach(emu.emulator, url=emu.url, ca_file=emu.ca_file)
        ns_rt = emu.emulator.registry.get("", "v1", "namespaces")
        for ns in namespaces:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            emu.call(emu.emulator.store.create, ns_rt, body, None)
        controller_kc = tmp / "controller.kubeconfig"
        install_controller_identity(emu, ROOT / "deploy" / "rbac.yaml", controller_kc)
        yield PodCluster(emu, runner, controller_kc)
