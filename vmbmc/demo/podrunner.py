"""The demo's pod runner: each kbmc pod the controller creates runs as a local `vmbmc kbmc` process.

It gives the process what a kubelet would (contracts §7): a loopback address of its own
(127.10.0.N, the pod IP, so the container ports 10623/UDP and 8443/TCP answer there), its Secret
volumes written out as files in a directory of its own, an emptyDir for /tmp, POD_NAME, and a
kubeconfig. Readiness is the kbmc's /readyz, as the pod's readinessProbe says; the process ending
is reported as the container exiting.

Pods that are not kbmc pods get an address and are reported ready without running anything (the
emulator's default kubelet behaviour).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from vmbmc.emulator.kubelet import PodEvents, PodHandle

log = logging.getLogger("vmbmc.demo.pods")

COMPONENT_LABEL = "app.kubernetes.io/component"
READY_POLL = 0.2


def kbmc_ports_free(address: str) -> bool:
    """The address exists here and the kbmc's container ports are free on it (a leftover process
    from an earlier run would make the pod crash-loop)."""
    checks = ((socket.SOCK_DGRAM, 10623), (socket.SOCK_STREAM, 8443), (socket.SOCK_STREAM, 8081))
    try:
        for kind, port in checks:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((address, port))
        return True
    except OSError:
        return False


class LocalPodRunner:
    def __init__(self, kubeconfig: str, workdir: str | os.PathLike[str], *, first_address: int = 101) -> None:
        self.kubeconfig = str(kubeconfig)
        self.workdir = Path(workdir)
        self._next = itertools.count(first_address)
        self._emulator: Any = None
        self._url: str | None = None
        self._ca_file: str | None = None
        self.addresses: dict[str, str] = {}  # "ns/pod" -> address
        self._running: set[asyncio.subprocess.Process] = set()

    def attach(self, emulator: Any, *, url: str | None = None, ca_file: str | None = None) -> None:
        """The emulator whose Secrets the pods mount (the runner runs on its loop). With `url`, each pod
        gets a kubeconfig with its own ServiceAccount's token, as a projected token would be (contracts
        §7, issue 12); without, the shared admin kubeconfig."""
        self._emulator = emulator
        self._url, self._ca_file = url, ca_file

    def _pod_kubeconfig(self, pod: dict[str, Any], root: Path) -> tuple[str, bool]:
        """(kubeconfig path, restricted): the pod's ServiceAccount token when the emulator can issue one."""
        if self._url is None:
            return self.kubeconfig, False
        from vmbmc.emulator.harness import write_kubeconfig

        ns = pod["metadata"]["namespace"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        token, _ = self._emulator.security.authn.issue_service_account_token(ns, sa, expiration=3600)
        path = root / "kubeconfig"
        write_kubeconfig(path, self._url, token, user=f"{ns}-{sa}", namespace=ns, ca_file=self._ca_file)
        path.chmod(0o600)
        return str(path), True

    def _address(self) -> str:
        for _ in range(250):
            n = next(self._next)
            candidate = f"127.10.{n // 250}.{n % 250 + 1}"
            if kbmc_ports_free(candidate):
                return candidate
        raise OSError("no free loopback address in 127.10.0.0/16 (macOS needs aliases; see README)")

    def _secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        rt = self._emulator.registry.get("", "v1", "secrets")
        return self._emulator.store.try_get(rt, namespace, name)

    def _write_volumes(self, pod: dict[str, Any], root: Path) -> dict[str, str]:
        """Secret volumes as files; returns mountPath -> local directory (emptyDirs too)."""
        spec = pod["spec"]
        ns = pod["metadata"]["namespace"]
        container = spec["containers"][0]
        local: dict[str, str] = {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            vol = volumes.get(mount["name"]) or {}
            target = root / "volumes" / mount["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "secret" in vol:
                secret = self._secret(ns, vol["secret"]["secretName"])
                if secret is None:
                    raise FileNotFoundError(f"Secret {ns}/{vol['secret']['secretName']} not found")
                for key, value in (secret.get("data") or {}).items():
                    path = target / key
                    path.write_bytes(base64.b64decode(value))
                    path.chmod(0o600)
            local[mount["mountPath"]] = str(target)
        return local

    async def start(self, pod: dict[str, Any], events: PodEvents) -> PodHandle:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        address = self._address()
        self.addresses[key] = address
        if (meta.get("labels") or {}).get(COMPONENT_LABEL) != "kbmc":
            events.ready(True)
            return PodHandle(address, None)
        root = self.workdir / "pods" / f"{meta['namespace']}-{meta['name']}"
        root.mkdir(parents=True, exist_ok=True)
        mounts = self._write_volumes(pod, root)
        args = list(pod["spec"]["containers"][0].get("args") or [])
        args = [_local_path(a, mounts) for a in args]  # paths inside the container -> our files
        kubeconfig, restricted = self._pod_kubeconfig(pod, root)
        args = [
            *_without(args, "--address", "--kubeconfig"),
            "--address",
            address,
            "--kubeconfig",
            kubeconfig,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        env.update(POD_NAME=meta["name"], TMPDIR=mounts.get("/tmp", str(root)))
        if restricted:  # its Roles allow only name-limited lists and watches, as in a pod
            env["VMBMC_RESTRICTED"] = "1"
        log_file = (root / "kbmc.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vmbmc", *args, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env
        )
        log_file.close()
        self._running.add(proc)
        health = _health_port(args)
        watcher = asyncio.get_running_loop().create_task(self._watch(proc, address, health, events, key))
        log.info("kbmc pod started", extra={"pod": key, "address": address, "pid": proc.pid})
        return PodHandle(address, (proc, watcher))

    async def _watch(
        self, proc: asyncio.subprocess.Process, address: str, health: int | None, events: PodEvents, key: str
    ) -> None:
        ready = False
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
                while proc.returncode is None:
                    if health is not None:
                        ok = False
                        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                            async with http.get(f"http://{address}:{health}/readyz") as resp:
                                ok = resp.status == 200
                        if ok != ready:
                            ready = ok
                            events.ready(ok)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(proc.wait(), READY_POLL)
        finally:
            # stop() cancels this watcher once the process is gone: forget it here in every case
            if proc.returncode is not None:
                self._running.discard(proc)
        log.info("kbmc pod exited", extra={"pod": key, "code": proc.returncode})
        events.exited(proc.returncode or 0)

    async def stop(self, handle: PodHandle, grace_seconds: float) -> None:
        if handle.data is None:
            return
        proc, watcher = handle.data
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), max(grace_seconds, 0.1))
            except TimeoutError:
                proc.kill()
                await proc.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    def kill_all(self) -> None:
        """Last resort on shutdown: no kbmc process outlives the demo (contracts §7)."""
        for proc in list(self._running):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()


def _without(args: list[str], *flags: str) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        if any(a.startswith(f + "=") for f in flags):
            continue
        out.append(a)
    return out


def _local_path(arg: str, mounts: dict[str, str]) -> str:
    """`arg` with its container mount path (the longest that matches) swapped for the local one."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if arg == mount_path or arg.startswith(mount_path.rstrip("/") + "/"):
            return mounts[mount_path] + arg[len(mount_path) :]
    return arg


def _health_port(args: list[str]) -> int | None:
    for i, a in enumerate(args):
        if a == "--health-port" and i + 1 < len(args):
            port = int(args[i + 1])
            return port if port >= 0 else None
        if a.startswith("--health-port="):
            port = int(a.split("=", 1)[1])
            return port if port >= 0 else None
    return 8081
