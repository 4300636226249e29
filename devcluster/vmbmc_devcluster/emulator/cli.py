"""`vmbmc emulator`: serve the emulated Kubernetes + KubeVirt API until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from vmbmc.usage import UsageError, check_port_free, port, writable_dir
from vmbmc_devcluster.emulator.harness import EmulatorThread


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    parser.add_argument("--port", type=port, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    parser.add_argument(
        "--crd",
        action="append",
        default=[],
        metavar="FILE",
        help="register the CustomResourceDefinitions in FILE at start (repeatable)",
    )
    parser.add_argument("--no-kubevirt", action="store_true", help="serve plain Kubernetes, without KubeVirt")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--allow-all",
        action="store_true",
        help="authorize every request (AlwaysAllow) over plain http, for quick experiments; by default "
        "RBAC is enforced over https, as in a real cluster (bad tokens are refused in both modes)",
    )
    # The default since RBAC became it; kept so older command lines still work.
    mode.add_argument("--rbac", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    check_port_free("--port", "127.0.0.1", args.port)
    writable_dir("--kubeconfig", Path(args.kubeconfig).resolve().parent)
    for crd in args.crd:
        if not Path(crd).is_file():
            raise UsageError(f"--crd {crd}: no such file; give a YAML file of CustomResourceDefinitions")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmulatorThread(
        port=args.port,
        kubeconfig=args.kubeconfig,
        kubevirt=not args.no_kubevirt,
        crds=args.crd,
        rbac=not args.allow_all,
    ) as emu:
        print(f"emulator serving {emu.url}; kubeconfig written to {args.kubeconfig}", flush=True)
        print(f"try: kubectl --kubeconfig {args.kubeconfig} get namespaces", flush=True)
        stop.wait()
    return 0
