"""Sample VMs for the demo: Off, with a disk, a cdrom and a NIC, so every boot target can be tried.

The disk is a 10Gi DataVolume from `dataVolumeTemplates`, blank as a bare-metal host's disk before
Ironic writes an image to it; its size is what Redfish reports and Ironic's inspection reads (local_gb).
"""

from __future__ import annotations

ROOT_DISK_SIZE = "10Gi"


def sample_vm(index: int, namespace: str = "default") -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": f"demo-vm-{index}", "namespace": namespace, "labels": {"app": "vmbmc-demo"}},
        "spec": {
            "runStrategy": "Halted",
            "dataVolumeTemplates": [
                {
                    "metadata": {"name": f"demo-vm-{index}-rootdisk"},
                    "spec": {
                        "source": {"blank": {}},
                        "storage": {"resources": {"requests": {"storage": ROOT_DISK_SIZE}}},
                    },
                }
            ],
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": f"demo-vm-{index}"}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "domain": {
                        "cpu": {"cores": 2},
                        "memory": {"guest": "2Gi"},
                        "devices": {
                            "disks": [
                                {"name": "rootdisk", "disk": {"bus": "virtio"}},
                                {"name": "installer", "cdrom": {"bus": "sata"}},
                            ],
                            "interfaces": [
                                {
                                    "name": "default",
                                    "masquerade": {},
                                    "model": "virtio",
                                    "macAddress": f"02:00:00:00:00:{index:02x}",
                                },
                            ],
                        },
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [
                        {"name": "rootdisk", "dataVolume": {"name": f"demo-vm-{index}-rootdisk"}},
                        {
                            "name": "installer",
                            "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"},
                        },
                    ],
                },
            },
        },
    }
