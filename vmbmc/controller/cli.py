"""`vmbmc controller`: the VirtualMachineBMC controller (flags as in deploy/controller.yaml)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from vmbmc.naming import SYSTEM_NAMESPACE
from vmbmc.usage import UsageError, check_kubeconfig, port


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    parser.add_argument(
        "--namespace", default=SYSTEM_NAMESPACE, help="system namespace (auto-created BMCs, Lease)"
    )
    parser.add_argument("--leader-elect", action="store_true", help="take the Lease vmbmc-controller first")
    parser.add_argument("--health-port", type=port, default=8080, help="/healthz, /readyz, /metrics (0: any)")
    parser.add_argument("--health-address", default="0.0.0.0", help="address of the health port")
    parser.add_argument(
        "--kbmc-image", help="image of the kbmc pods (default: the controller's own, read from its pod)"
    )
    parser.add_argument(
        "--kbmc-mode",
        choices=("dedicated", "shared"),
        default="dedicated",
        help="dedicated: a kbmc pod per BMC (default); shared: one kbmc pod per BMC namespace serves all",
    )
    parser.add_argument("--no-auto-create", action="store_true", help="do not create a BMC for every VM")
    parser.add_argument(
        "--vm-namespace-selector",
        metavar="LABELSEL",
        help="auto-create BMCs only for VMs in matching namespaces",
    )
    parser.add_argument(
        "--redfish-default", action="store_true", help="auto-created BMCs get spec.redfish.enabled: true"
    )
    parser.add_argument(
        "--redfish-insecure-http-default",
        action="store_true",
        help="auto-created BMCs get spec.redfish.insecureHTTP: true (Redfish over plain HTTP)",
    )
    parser.add_argument(
        "--event-destinations",
        metavar="LIST",
        default="",
        help="where kbmcs may push Redfish events: comma-separated CIDRs and host[:port] (default: empty, "
        "nowhere); a BMC's spec.redfish.eventDestinations narrows it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    from vmbmc.controller.operator import run_controller
    from vmbmc.controller.options import ControllerOptions
    from vmbmc.destinations import AllowList
    from vmbmc.selectors import parse

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        parse(args.vm_namespace_selector)
    except ValueError as err:
        raise UsageError(f"--vm-namespace-selector: {err}") from None
    try:
        destinations = AllowList.parse(args.event_destinations)
    except ValueError as err:
        raise UsageError(f"--event-destinations: {err}") from None
    check_kubeconfig(args.kubeconfig)
    options = ControllerOptions(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        leader_elect=args.leader_elect,
        health_port=args.health_port,
        health_address=args.health_address,
        kbmc_image=args.kbmc_image,
        kbmc_mode=args.kbmc_mode,
        auto_create=not args.no_auto_create,
        vm_namespace_selector=args.vm_namespace_selector,
        redfish_default=args.redfish_default,
        redfish_insecure_http_default=args.redfish_insecure_http_default,
        event_destinations=destinations,
    )

    asyncio.run(run_controller(options, handle_signals=True))
    return 0
