"""`vmbmc demo`: an emulated cluster with sample VMs and a BMC for each, all on localhost."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from vmbmc.usage import UsageError, check_port_free, port, writable_dir
from vmbmc_devcluster.demo.cluster import StartupFailed
from vmbmc_devcluster.demo.endpoints import BmcEndpoint, write_endpoints
from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread

log = logging.getLogger("vmbmc.demo")
# On the way out, each of the pods' stop and the API server's shutdown wait at most this long: the pods
# already got SIGTERM, and whatever is left then is killed (the demo stops within 10 s).
STOP_WAIT_S = 3.0
# Dedicated mode runs a kbmc process per VM beside the emulator and the controller: 200 took under 5
# minutes on 2 CPUs shared with other work (bench/README.md). Beyond this many per CPU, shared mode.
DEDICATED_VMS_PER_CPU = 125


def dedicated_limit() -> int:
    return DEDICATED_VMS_PER_CPU * (os.cpu_count() or 1)


def _not_reaped_twice(record: logging.LogRecord) -> bool:
    """asyncio's child watcher warns of "Unknown child process" when a pod's process it waits for was
    reaped first, as happens on the way out to processes the demo killed: nothing left to report."""
    return not record.getMessage().startswith("Unknown child process pid")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vms", type=int, default=3, help="number of sample VMs (default 3)")
    parser.add_argument(
        "--redfish", action="store_true", help="also serve Redfish (HTTPS on port 8443 of each BMC)"
    )
    parser.add_argument(
        "--redfish-http", action="store_true", help="serve Redfish over plain HTTP, not HTTPS"
    )
    parser.add_argument(
        "--endpoints-file", metavar="PATH", help="write the BMC endpoints here as JSON when ready"
    )
    parser.add_argument(
        "--workdir", metavar="DIR", help="where the kubeconfig goes (default: a temporary dir)"
    )
    parser.add_argument("--port", type=port, default=0, help="API server port on 127.0.0.1 (default: any)")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="serve the BMCs in-process, without the controller and the CRD's pods",
    )
    parser.add_argument(
        "--kbmc-mode",
        choices=("dedicated", "shared"),
        default="dedicated",
        help="dedicated: a kbmc pod per BMC (default); shared: one kbmc pod serves every BMC, each on "
        "its own ports",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")


def _print_guide(kubeconfig: str, bmcs: list[BmcEndpoint], endpoints_file: str | None) -> None:
    k = f"kubectl --kubeconfig {shlex.quote(kubeconfig)}"
    lines = ["", "vmbmc demo is ready.", "", f"  {k} get vm,vmi", ""]
    for b in bmcs:
        lines.append(f"  VM {b.vm}  user {b.username}  password {b.password}")
        if b.ipmi_host is not None:
            for interface in ("lanplus", "lan"):  # IPMI 2.0, and the seed's IPMI 1.5 flow
                lines.append(
                    f"    ipmitool -I {interface} -H {b.ipmi_host} -p {b.ipmi_port} -U {b.username} "
                    f"-P {shlex.quote(b.password)} power status"
                )
        if b.redfish is not None:
            system = f"{b.redfish}/Systems/{b.vm.split('/', 1)[1]}"
            lines.append(f"    curl -sk -u {b.username}:{shlex.quote(b.password)} {system}")
            lines.append(
                f"    curl -sk -u {b.username}:{shlex.quote(b.password)} -X POST -H 'Content-Type: "
                f'application/json\' -d \'{{"ResetType":"On"}}\' '
                f"{system}/Actions/ComputerSystem.Reset"
            )
        ns, name = b.vm.split("/", 1)
        if b.bmc is not None:
            bns, bname = b.bmc.split("/", 1)
            lines.append(f"    {k} -n {bns} describe vmbmc {bname}")
        lines.append(f"    {k} -n {ns} describe vm {name}")
        lines.append("")
    if endpoints_file:
        lines.append(f"Endpoints written to {endpoints_file}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


async def _serve(
    args: argparse.Namespace, emu: EmulatorThread, vms: list[tuple[str, str]], runner: LocalPodRunner
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from vmbmc import manifests
    from vmbmc.k8s.client import ApiClient
    from vmbmc_devcluster.demo.install import apply_all, with_controller_args

    api = await ApiClient.connect(emu.kubeconfig)
    try:
        if args.standalone:
            await apply_all(api, manifests.crd_documents())
            return await _serve_standalone(args, emu, vms, stop)
        # What `kubectl apply -k deploy/` creates; the controller runs from its Deployment's pod.
        objects = manifests.deploy_documents()
        runner.add_image(manifests.controller_image(objects))  # as `kind load docker-image` would
        extra = []
        if args.redfish or args.redfish_http:
            extra = ["--redfish-default"] + (["--redfish-insecure-http-default"] if args.redfish_http else [])
        if args.kbmc_mode != "dedicated":
            extra += ["--kbmc-mode", args.kbmc_mode]
        if extra:
            objects = with_controller_args(objects, extra)
        await apply_all(api, objects)
    finally:
        await api.close()
    from vmbmc_devcluster.demo.cluster import wait_for_bmcs

    waiting = asyncio.ensure_future(wait_for_bmcs(emu, vms))
    await asyncio.wait([waiting, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        return 0
    endpoints = waiting.result()  # StartupFailed: run() says where the logs are kept
    if args.endpoints_file:
        write_endpoints(args.endpoints_file, emu.kubeconfig, endpoints)
    _print_guide(emu.kubeconfig, endpoints, args.endpoints_file)
    await stop.wait()
    print("stopping…", flush=True)
    return 0


async def _serve_standalone(
    args: argparse.Namespace, emu: EmulatorThread, vms: list[tuple[str, str]], stop: asyncio.Event
) -> int:
    from vmbmc_devcluster.demo.standalone import StandaloneBmcs

    bmcs = StandaloneBmcs(
        emu.kubeconfig, redfish=args.redfish or args.redfish_http, redfish_http=args.redfish_http
    )
    try:
        endpoints = await bmcs.start(vms)
        if args.endpoints_file:
            write_endpoints(args.endpoints_file, emu.kubeconfig, endpoints)
        _print_guide(emu.kubeconfig, endpoints, args.endpoints_file)
        await stop.wait()
        print("stopping…", flush=True)
    finally:
        await asyncio.wait_for(bmcs.stop(), 8)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("asyncio").addFilter(_not_reaped_twice)
    if args.vms < 1:
        raise UsageError("--vms must be at least 1")
    if args.kbmc_mode == "dedicated" and not args.standalone and args.vms > dedicated_limit():
        raise UsageError(
            f"dedicated mode runs a process per VM: above {dedicated_limit()} VMs on this machine "
            f"({os.cpu_count() or 1} CPUs) use --kbmc-mode shared"
        )
    check_port_free("--port", "127.0.0.1", args.port)
    # Until the event loop takes SIGTERM over, let it unwind like Ctrl-C, so the workdir still goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.workdir:
        workdir, temporary = writable_dir("--workdir", Path(args.workdir)), False
    else:  # a temporary workdir holds kubeconfigs and passwords: it goes when the demo does, unless it failed
        workdir, temporary = Path(tempfile.mkdtemp(prefix="vmbmc-demo-")), True
    try:
        code = _run(args, workdir)
    except Exception as err:  # one line naming the cause, and the logs it leaves (cli.main prints it)
        raise StartupFailed(f"{failure_text(err)}; {_kept(workdir, temporary)}") from None
    except BaseException:
        _remove(workdir, temporary)
        raise
    _remove(workdir, temporary)
    return code


def failure_text(err: BaseException) -> str:
    """An exception as one line: its message, else its type (a bare TimeoutError has no message)."""
    text = str(getattr(err, "message", "") or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _kept(workdir: Path, temporary: bool) -> str:
    """What a failed demo leaves to read: only files that exist."""
    pods = workdir / "pods"
    where = f"the pods' logs are in {pods}" if pods.is_dir() and any(pods.iterdir()) else "nothing ran"
    return f"{where} (the workdir {workdir} is kept: remove it when done)" if temporary else where


def _remove(workdir: Path, temporary: bool) -> None:
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    started = time.monotonic()
    runner = LocalPodRunner(str(workdir / "kubeconfig"), workdir)
    # The emulator enforces RBAC and every pod runs under its own ServiceAccount's token; the
    # standalone BMCs use the admin kubeconfig.
    emu = EmulatorThread(
        port=args.port, kubeconfig=workdir / "kubeconfig", pod_runner=None if args.standalone else runner
    )
    try:
        emu.start()
        runner.attach(emu.emulator, url=emu.url, ca_file=emu.ca_file)
        vms = emu.call(_create_vms, emu, args.vms, timeout=60)
        try:
            code = asyncio.run(_serve(args, emu, vms, runner))
        finally:  # every pod gets SIGTERM at once, before the kubelet and the API server stop
            runner.close()
    finally:
        emu.stop(timeout=STOP_WAIT_S)
        runner.kill_all()  # the last resort: nothing the demo started outlives it
    log.info("demo stopped", extra={"uptime_s": round(time.monotonic() - started, 1)})
    return code


def _create_vms(emu: EmulatorThread, count: int) -> list[tuple[str, str]]:
    """The sample VMs, in one call on the emulator's loop."""
    vm_rt = emu.emulator.registry.get("kubevirt.io", "v1", "virtualmachines")
    vms = []
    for i in range(1, count + 1):
        obj = sample_vm(i)
        emu.emulator.store.create(vm_rt, obj, "default")
        vms.append(("default", obj["metadata"]["name"]))
    return vms
