"""`vmbmc kbmc`: the BMC of one VirtualMachineBMC (`--bmc`) or of one VM without the CRD (`--vm`).

The one place where the front ends and the KubeVirt back end are wired together: the front ends
talk only to the state machine, and all other Kubernetes I/O lives in the back end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from vmbmc.auth import Credentials, FileCredentials, StaticCredentials
from vmbmc.kbmc.server import DEFAULT_PORT
from vmbmc.kbmc.service import REDFISH_PORT, BmcService, ServiceOptions
from vmbmc.machine.errors import NotFound
from vmbmc.usage import UsageError, check_kubeconfig, port, port_or_off

log = logging.getLogger("vmbmc.kbmc")


def _ref(value: str) -> tuple[str, str]:
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {value!r}")
    return ns, name


def configure(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--bmc", type=_ref, metavar="NS/NAME", help="serve this VirtualMachineBMC")
    who.add_argument("--vm", type=_ref, metavar="NS/NAME", help="serve this VM without the CRD (standalone)")
    who.add_argument(
        "--shared",
        metavar="NAMESPACE",
        help="serve every BMC the namespace's ConfigMap vmbmc-kbmc-shared lists, each on its own ports "
        "with its own credentials Secret (shared mode; --ipmi-port, --redfish-port, --credentials-dir "
        "unused)",
    )
    parser.add_argument("--kubeconfig", metavar="PATH", help="default: in-cluster, then KUBECONFIG")
    parser.add_argument("--address", default="::", help="address to listen on (default :: , IPv6 and IPv4)")
    parser.add_argument("--ipmi-port", type=port, default=DEFAULT_PORT, help="UDP port (default 10623)")
    parser.add_argument(
        "--advertised-ipmi-port",
        type=port,
        default=None,
        help="the IPMI port clients use, named in SOL and Redfish answers "
        "(a Service's 623; default: --ipmi-port)",
    )
    parser.add_argument(
        "--redfish-port",
        type=port,
        default=None,
        help=f"serve Redfish on this port (--bmc: only when spec.redfish.enabled; usual {REDFISH_PORT})",
    )
    parser.add_argument("--redfish-http", action="store_true", help="plain HTTP instead of HTTPS")
    parser.add_argument("--tls-cert", metavar="FILE")
    parser.add_argument("--tls-key", metavar="FILE")
    parser.add_argument(
        "--credentials-dir",
        metavar="DIR",
        help="directory with files 'username' and 'password' (the mounted Secret); "
        "else VMBMC_USERNAME / VMBMC_PASSWORD",
    )
    parser.add_argument(
        "--health-port", type=port_or_off, default=8081, help="/healthz /readyz /metrics; -1: off"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def credentials(args: argparse.Namespace) -> Credentials:
    if args.credentials_dir:
        return FileCredentials(args.credentials_dir)
    user, password = os.environ.get("VMBMC_USERNAME", ""), os.environ.get("VMBMC_PASSWORD", "")
    if user and password:
        return StaticCredentials(user, password)
    raise UsageError("no credentials: give --credentials-dir DIR, or set VMBMC_USERNAME and VMBMC_PASSWORD")


def setup_logging(verbose: bool) -> None:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> int:
    from vmbmc.kubevirt.hub import KubeVirtHub

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together: give both, or neither for a self-signed one")
    if args.shared:
        return await serve_shared(args, stop)
    creds = credentials(args)
    check_kubeconfig(args.kubeconfig)
    hub = await KubeVirtHub.connect(args.kubeconfig)
    # In a pod the Roles allow only name-restricted lists and watches (`resourceNames`).
    restricted = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) or os.environ.get("VMBMC_RESTRICTED") == "1"
    health = None
    service: BmcService | None = None
    machine = None
    try:
        if args.health_port >= 0:
            from vmbmc.health import HealthServer
            from vmbmc.metrics import REGISTRY

            # Ready once the VM watch has synced (before that the BMC would answer from nothing) and
            # the front ends listen (Redfish waits for its certificate).
            def ready() -> bool:
                return service is not None and hub.ready()

            health = HealthServer(REGISTRY, args.address, args.health_port, ready_check=ready)
            health.ready_reason = "watch not synced or not listening yet"
            await health.start()
        if args.bmc:
            machine = await hub.machine_for_bmc(*args.bmc, restricted=restricted)
            bmc = hub.cached_bmc(*args.bmc)
            redfish = args.redfish_port if _enabled(bmc, "redfish", False) else None
            ipmi = args.ipmi_port if _enabled(bmc, "ipmi", True) else None
        else:
            machine = await hub.machine_for_vm(*args.vm, restricted=restricted)
            redfish, ipmi = args.redfish_port, args.ipmi_port
        opts = ServiceOptions(
            address=args.address,
            ipmi_port=ipmi,
            advertised_ipmi_port=args.advertised_ipmi_port,
            redfish_port=redfish,
            redfish_http=args.redfish_http,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
        service = await BmcService(machine, creds, opts).start()
        _warn_if_vm_missing(machine)
        log.info(
            "kbmc ready",
            extra={
                "vm": machine.vm,
                "bmc": machine.bmc,
                "ipmi_port": service.ipmi.port if service.ipmi else None,
                "redfish": service.redfish_url,
                "health_port": health.port if health else None,
            },
        )
        await stop.wait()
        return 0
    finally:
        if service is not None:
            await service.stop()
        if health is not None:
            await health.stop()
        if machine is not None:
            await hub.release(machine)
        await hub.close()


async def serve_shared(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Shared mode: every BMC of the roster (vmbmc.kbmc.shared), one health endpoint for the pod."""
    from vmbmc.kbmc.shared import SharedKbmc
    from vmbmc.kubevirt.hub import KubeVirtHub

    check_kubeconfig(args.kubeconfig)
    hub = await KubeVirtHub.connect(args.kubeconfig)
    restricted = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) or os.environ.get("VMBMC_RESTRICTED") == "1"
    kbmc = SharedKbmc(
        hub,
        args.shared,
        address=args.address,
        restricted=restricted,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        advertised_ipmi_port=args.advertised_ipmi_port,
    )
    health = None
    try:
        if args.health_port >= 0:
            from vmbmc.health import HealthServer
            from vmbmc.metrics import REGISTRY

            health = HealthServer(REGISTRY, args.address, args.health_port, ready_check=kbmc.ready)
            health.ready_reason = "roster not read, or its BMCs not started yet"
            await health.start()
        log.info("shared kbmc started", extra={"namespace": args.shared, "address": args.address})
        await kbmc.run(stop)
        return 0
    finally:
        if health is not None:
            await health.stop()
        await hub.close()


def _warn_if_vm_missing(machine: Any) -> None:
    """Standalone mode starts for a VM that is not there (yet): say so once, and what clients get."""
    try:
        machine.power_status()
    except NotFound as err:
        log.warning(
            "VM not present: IPMI answers D5h (not supported in present state) and Redfish 404 "
            "ResourceNotFound until it is created",
            extra={"vm": machine.vm, "error": err.message},
        )


def _enabled(bmc: dict[str, Any] | None, protocol: str, default: bool) -> bool:
    """spec.<protocol>.enabled of the served VirtualMachineBMC (defaults: ipmi true, redfish false)."""
    return bool((((bmc or {}).get("spec") or {}).get(protocol) or {}).get("enabled", default))


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await serve(args, stop)

    try:
        return asyncio.run(main())
    except UsageError:
        raise  # vmbmc.cli prints it: one line, exit code 2
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"vmbmc kbmc: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # e.g. NotFound for the BMC or VM: say what, not a traceback
        with contextlib.suppress(Exception):
            log.error("kbmc failed", extra={"error": str(err)})
        print(f"vmbmc kbmc: {getattr(err, 'message', err)}", file=sys.stderr)
        return 1
