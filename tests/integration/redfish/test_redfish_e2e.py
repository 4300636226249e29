"""End to end: emulator (Kubernetes + KubeVirt API) + KubeVirtHub + Redfish, driven by sushy.

sushy powers a Halted VM on as Ironic does (Reset On, then poll PowerState until On) and reads its
MAC; the VM must then be Running in the API, started through KubeVirt's `start` subresource.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings

import sushy
import urllib3
from redfish_servers import PASSWORD, USER

from vmbmc.auth import StaticCredentials
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.redfish import create_app, serve

VM = """\
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        cpu: {{cores: 2}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
          interfaces:
          - {{name: default, masquerade: {{}}, macAddress: "52:54:00:aa:bb:cc"}}
        resources: {{requests: {{memory: 1Gi}}}}
      networks:
      - {{name: default, pod: {{}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/kubevirt/cirros-container-disk-demo}}}}
"""


def wait_power(system, state: sushy.PowerState) -> None:
    deadline = time.monotonic() + 60  # Ironic's power_state_change_timeout
    while system.power_state != state:
        assert time.monotonic() < deadline, f"still {system.power_state}, wanted {state}"
        time.sleep(0.2)
        system.refresh()


def ironic(
    url: str, system_path: str, reset: sushy.ResetType, state: sushy.PowerState
) -> tuple[str, list[str]]:
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.SessionOrBasicAuth(USER, PASSWORD)
    try:
        conn = sushy.Sushy(url + "/redfish/v1", verify=False, auth=auth)
        system = conn.get_system(system_path)
        before = system.power_state.value
        system.reset_system(reset)
        wait_power(system, state)
        return before, sorted(system.ethernet_interfaces.summary)
    finally:
        auth.close()


async def test_sushy_powers_on_a_kubevirt_vm(emulator, kubectl) -> None:
    namespace, name = f"rf-{uuid.uuid4().hex[:8]}", "vm1"
    # --validate=false: the emulator does not serve OpenAPI for client-side validation yet
    manifest = VM.format(name=name, namespace=namespace)
    await asyncio.to_thread(kubectl, "apply", "--validate=false", "-f", "-", input=manifest)
    hub = await KubeVirtHub.connect(str(emulator.kubeconfig))
    server = None
    try:
        machine = await hub.machine_for_vm(namespace, name)
        server = await serve(create_app(machine, StaticCredentials(USER, PASSWORD)), "127.0.0.1", 0)
        system = f"/redfish/v1/Systems/{name}"
        before, macs = await asyncio.to_thread(
            ironic, server.url, system, sushy.ResetType.ON, sushy.PowerState.ON
        )
        assert before == "Off"
        assert macs == ["52:54:00:aa:bb:cc"]
        out = await asyncio.to_thread(kubectl, "get", "vm", name, "-n", namespace, "-o", "json")
        assert json.loads(out.stdout)["status"]["printableStatus"] == "Running"
        # and off again (Ironic's power off: ForceOff, poll Off)
        before, _ = await asyncio.to_thread(
            ironic, server.url, system, sushy.ResetType.FORCE_OFF, sushy.PowerState.OFF
        )
        assert before == "On"
        out = await asyncio.to_thread(kubectl, "get", "vm", name, "-n", namespace, "-o", "json")
        assert json.loads(out.stdout)["status"]["printableStatus"] == "Stopped"
    finally:
        if server is not None:
            await server.stop()
        await hub.close()
