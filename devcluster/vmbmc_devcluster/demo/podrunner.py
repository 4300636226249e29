"""The demo's pod runner: each pod runs as a local `vmbmc` process, started from its pod spec as a
kubelet would start its container, so what `deploy/` and the controller write is what runs.

Like the kubelet of a kind node, it runs only the images it has been given (`add_image`, what
`kind load docker-image` does); a pod naming any other image, or one that a kubelet would pull anyway
(`imagePullPolicy: Always`, the default for `:latest`), shows `ErrImagePull` / `ImagePullBackOff`.
The image's entrypoint is `vmbmc` (see Dockerfile), so a container runs `python -P -m vmbmc ARGS`, in
a directory of its own (never the caller's, where a folder named `vmbmc` would shadow the package).

A container gets what a kubelet gives it: its `env` (literals, the downward API's
`fieldRef`s, `secretKeyRef`/`configMapKeyRef`), its Secret, ConfigMap and emptyDir volumes written out
as files in a directory of its own (container paths in its arguments point there), a kubeconfig with its
ServiceAccount's token (unless `automountServiceAccountToken: false`), and an address of its own
(127.10.0.N, the pod IP) that its listeners bind: `vmbmc kbmc … --address ADDR`, `vmbmc controller …
--health-address ADDR`. Probes are the pod's own `httpGet` readiness and liveness probes.

One address is pinned per workload (a Deployment, else the pod): a restarted container and a
replacement pod come back on the same address, so the address the demo prints stays valid, as a
Service's would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import itertools
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from vmbmc.kustomize import split_image
from vmbmc_devcluster.emulator.kubelet import ImagePullError, PodEvents, PodHandle, StartPending

log = logging.getLogger("vmbmc.demo.pods")

# Readiness is probed this often until a container is Ready (compressed time, so the demo starts fast),
# then every periodSeconds of its probe, as a kubelet does: probing hundreds of Ready pods five times a
# second would take the emulator's loop (which runs this runner) from the API it serves.
READY_POLL = 0.2
# Containers starting at once (a start ends when the container is Ready or exits, or after START_WINDOW
# seconds): hundreds of processes listing and watching at the same moment would starve the API server they
# all need, and every one of them would time out; in turn, they start within seconds each.
MAX_STARTING = 8
START_WINDOW = 30.0
# A probe's answer is awaited this long (a kubelet's default timeoutSeconds is 1): the probes run on the
# emulator's loop, whose own lag while it serves hundreds of pods would otherwise fail pods that answered.
PROBE_TIMEOUT = 10.0
ENTRYPOINT = "vmbmc"  # the image's ENTRYPOINT
ADDRESS_FLAGS = {"kbmc": "--address", "controller": "--health-address"}  # how each command binds its pod IP
# the image's ENV (Dockerfile; its HOME is /tmp, here the pod's /tmp volume)
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
POD_TEMPLATE_HASH = "pod-template-hash"
# One lock file per address in use, machine-wide as the addresses are (not under a per-user TMPDIR).
_SHARED_TMP = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
LOCK_DIR = _SHARED_TMP / "vmbmc-loopback-addresses"
KBMC_PORTS = ((socket.SOCK_DGRAM, 10623), (socket.SOCK_STREAM, 8443), (socket.SOCK_STREAM, 8081))


def normalize_image(ref: str) -> str:
    """An image reference as a container runtime resolves it: `vmbmc:dev` is
    `docker.io/library/vmbmc:dev`, no tag means `:latest`."""
    name, tag, digest = split_image(ref)
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}"
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = name.replace("docker.io/", "docker.io/library/", 1)
    if digest:
        return f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


def pull_policy(container: dict[str, Any]) -> str:
    """The container's imagePullPolicy, with the API server's default (Always for `:latest` or no tag)."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    _, tag, digest = split_image(str(container.get("image") or ""))
    return "Always" if not digest and tag in (None, "latest") else "IfNotPresent"


def ports_free(address: str, ports: Iterable[tuple[int, int]]) -> bool:
    """The address exists here and these (socket type, port) are free on it (a leftover process from
    an earlier run would make the pod crash-loop)."""
    try:
        for kind, port in ports:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((address, port))
        return True
    except OSError:
        return False


def kbmc_ports_free(address: str) -> bool:
    """The kbmc's container ports (IPMI, Redfish, health) are free on `address`."""
    return ports_free(address, KBMC_PORTS)


class LocalPodRunner:
    def __init__(
        self,
        kubeconfig: str,
        workdir: str | os.PathLike[str],
        *,
        first_address: int = 101,
        images: Iterable[str] = (),
    ) -> None:
        # absolute: a pod runs in a directory of its own, where a relative path would point elsewhere
        self.kubeconfig = str(Path(kubeconfig).absolute())
        self.workdir = Path(workdir).absolute()
        self._next = itertools.count(first_address)
        self._emulator: Any = None
        self._url: str | None = None
        self._ca_file: str | None = None
        self.images: set[str] = {normalize_image(i) for i in images}
        self.addresses: dict[str, str] = {}  # "ns/pod" -> address
        self.pinned: dict[str, str] = {}  # "ns/workload" -> address
        self._on_address: dict[str, asyncio.subprocess.Process] = {}
        self._running: set[asyncio.subprocess.Process] = set()
        self._claims: dict[str, int] = {}  # address -> file descriptor holding its lock
        self._starting: asyncio.Semaphore | None = None  # made on the emulator's loop, at the first start
        self.closing = False  # close(): the node shuts down

    def add_image(self, ref: str) -> None:
        """Make `ref` runnable here, as `kind load docker-image` puts an image on a node."""
        self.images.add(normalize_image(ref))

    def attach(self, emulator: Any, *, url: str | None = None, ca_file: str | None = None) -> None:
        """The emulator whose Secrets the pods mount (the runner runs on its loop). With `url`, each pod
        gets a kubeconfig with its own ServiceAccount's token, as a projected token would be;
        without, the shared admin kubeconfig."""
        self._emulator = emulator
        self._url, self._ca_file = url, ca_file

    # --- what a kubelet gives a container ------------------------------------------------------------
    def _pod_kubeconfig(self, pod: dict[str, Any], root: Path) -> tuple[str | None, bool]:
        """(kubeconfig path or None, restricted): the pod's ServiceAccount token when the emulator can
        issue one; None when the pod asked for no token."""
        if pod["spec"].get("automountServiceAccountToken") is False:
            return None, True
        if self._url is None:
            return self.kubeconfig, False
        from vmbmc_devcluster.emulator.harness import write_kubeconfig

        ns = pod["metadata"]["namespace"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        token, _ = self._emulator.security.authn.issue_service_account_token(ns, sa, expiration=3600)
        path = root / "kubeconfig"
        write_kubeconfig(path, self._url, token, user=f"{ns}-{sa}", namespace=ns, ca_file=self._ca_file)
        path.chmod(0o600)
        return str(path), True

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        rt = self._emulator.registry.get("", "v1", plural)
        return self._emulator.store.try_get(rt, namespace, name)

    def _source(self, plural: str, namespace: str, name: str, waiting: str) -> dict[str, bytes]:
        obj = self._get(plural, namespace, name)
        if obj is None:  # the container waits with reason `waiting`, as with a kubelet
            kind = "secret" if plural == "secrets" else "configmap"
            raise StartPending(waiting, f'{kind} "{name}" not found')
        if plural == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}

    def _write_volumes(self, pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, str]:
        """Secret and ConfigMap volumes as files, emptyDirs as directories; → mountPath -> local dir."""
        ns = pod["metadata"]["namespace"]
        local: dict[str, str] = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            vol = volumes.get(mount["name"])
            if vol is None:
                raise ValueError(f'volumeMount "{mount["name"]}" names no volume of the pod')
            target = root / "volumes" / mount["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "secret" in vol:
                files = self._source("secrets", ns, vol["secret"]["secretName"], "ContainerCreating")
            elif "configMap" in vol:
                files = self._source("configmaps", ns, vol["configMap"]["name"], "ContainerCreating")
            elif "emptyDir" in vol:
                files = {}
            else:
                raise ValueError(f'volume "{mount["name"]}": only secret, configMap and emptyDir run here')
            for key, value in files.items():
                path = target / key
                path.write_bytes(value)
                path.chmod(0o600)
            local[mount["mountPath"]] = str(target)
        return local

    def _env(self, pod: dict[str, Any], container: dict[str, Any], address: str) -> dict[str, str]:
        meta, ns = pod["metadata"], pod["metadata"]["namespace"]
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": ns,
            "metadata.uid": meta.get("uid", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName") or "default",
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "status.podIP": address,
        }
        out: dict[str, str] = {}
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            if source is None:
                out[var["name"]] = str(var.get("value", ""))
            elif "fieldRef" in source:
                out[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                plural, ref = (
                    ("secrets", source["secretKeyRef"])
                    if "secretKeyRef" in source
                    else ("configmaps", source["configMapKeyRef"])
                )
                values = self._source(plural, ns, ref["name"], "CreateContainerConfigError")
                if ref["key"] not in values:
                    raise StartPending("CreateContainerConfigError", f"couldn't find key {ref['key']}")
                out[var["name"]] = values[ref["key"]].decode()
            else:
                raise ValueError(f"env {var['name']}: {sorted(source)} is not supported here")
        return out

    # --- addresses -----------------------------------------------------------------------------------
    @staticmethod
    def _workload(pod: dict[str, Any]) -> str:
        """The pod's Deployment ("ns/name", from its ReplicaSet), else the pod itself."""
        meta = pod["metadata"]
        rs = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"), None)
        name = meta["name"]
        if rs is not None:
            name = str(rs["name"])
            suffix = (meta.get("labels") or {}).get(POD_TEMPLATE_HASH)
            if suffix and name.endswith(f"-{suffix}"):
                name = name[: -len(suffix) - 1]
        return f"{meta['namespace']}/{name}"

    def _address(self, workload: str, ports: list[tuple[int, int]]) -> str:
        if workload in self.pinned:
            return self.pinned[workload]
        taken = set(self.pinned.values())
        for _ in range(1000):
            n = next(self._next)
            candidate = f"127.10.{n // 250}.{n % 250 + 1}"
            if candidate not in taken and ports_free(candidate, ports) and self._claim(candidate):
                self.pinned[workload] = candidate
                return candidate
        raise OSError("no free loopback address in 127.10.0.0/16 (macOS needs aliases; see README)")

    # --- the kubelet's calls -------------------------------------------------------------------------
    async def start(self, pod: dict[str, Any], events: PodEvents) -> PodHandle:
        meta, spec = pod["metadata"], pod["spec"]
        key = f"{meta['namespace']}/{meta['name']}"
        if len(spec.get("containers") or []) != 1 or spec.get("initContainers"):
            raise ValueError("the demo's pod runner runs pods of one container and no init containers")
        container = spec["containers"][0]
        image = str(container.get("image") or "")
        if normalize_image(image) not in self.images:
            raise ImagePullError(
                image,
                f'failed to pull and unpack image "{normalize_image(image)}": not found: this node has '
                f"only the images it was given ({', '.join(sorted(self.images)) or 'none'})",
            )
        if pull_policy(container) == "Always":
            raise ImagePullError(
                image, f'imagePullPolicy Always: pulling "{image}" needs a registry, and this node has none'
            )
        ports = _ports(container)
        if self._starting is None:
            self._starting = asyncio.Semaphore(MAX_STARTING)
        await self._starting.acquire()  # released by the watcher once the container started (or failed)
        try:
            return await self._start(pod, events, key, container, ports)
        except BaseException:
            self._starting.release()
            raise

    async def _start(
        self, pod: dict[str, Any], events: PodEvents, key: str, container: dict[str, Any], ports: list
    ) -> PodHandle:
        meta = pod["metadata"]
        address = self._address(self._workload(pod), ports)
        self.addresses[key] = address
        await self._wait_for_address(address)
        root = self.workdir / "pods" / f"{meta['namespace']}-{meta['name']}"
        root.mkdir(parents=True, exist_ok=True)
        mounts = self._write_volumes(pod, container, root)
        kubeconfig, restricted = self._pod_kubeconfig(pod, root)
        argv = self._argv(container, mounts, address, kubeconfig or str(root / "no-service-account-token"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(IMAGE_ENV, HOME=mounts.get("/tmp", str(root)), TMPDIR=mounts.get("/tmp", str(root)))
        env.update(self._env(pod, container, address))
        if restricted:  # its Roles allow only name-limited lists and watches, as in a pod
            env["VMBMC_RESTRICTED"] = "1"
        with (root / f"{container['name']}.log").open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env, cwd=root
            )
        self._running.add(proc)
        self._on_address[address] = proc
        watcher = asyncio.get_running_loop().create_task(self._watch(proc, address, container, events, key))
        log.info("pod started", extra={"pod": key, "address": address, "pid": proc.pid})
        return PodHandle(address, (proc, watcher))

    def _claim(self, address: str) -> bool:
        """Hold an advisory lock on `address` for as long as this runner lives: another demo or test on
        this host, which may find the ports free between our check and our process's bind, then picks
        another address (else its readiness probe could reach our kbmc, and its clients too)."""
        try:
            LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
            fd = os.open(LOCK_DIR / address, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:  # no shared lock directory here: the port check alone decides
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._claims[address] = fd
        return True

    def release_addresses(self) -> None:
        for fd in self._claims.values():
            os.close(fd)  # closing drops the lock
        self._claims.clear()

    async def _wait_for_address(self, address: str, timeout: float = 15.0) -> None:
        """A replacement pod waits for its predecessor on the pinned address to exit (the kubelet is
        stopping it), as its listeners could not bind before."""
        old = self._on_address.get(address)
        if old is not None and old.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old.wait(), timeout)

    @staticmethod
    def _argv(container: dict[str, Any], mounts: dict[str, str], address: str, kubeconfig: str) -> list[str]:
        """The container's command line, run here: its pod IP and its token (the in-cluster config a
        kubelet would mount) passed as flags, container paths swapped for the local files."""
        command = list(container.get("command") or [ENTRYPOINT])
        if command != [ENTRYPOINT]:
            raise ValueError(f'exec: "{command[0]}": this image runs only {ENTRYPOINT}')
        args = [_local_path(a, mounts) for a in container.get("args") or []]
        flag = ADDRESS_FLAGS.get(args[0]) if args else None
        if flag is None:
            raise ValueError(f"the demo's pod runner runs only {' and '.join(ADDRESS_FLAGS)} containers")
        # No Service in front of a local pod: clients use the container port, which SOL then names.
        args = _without(args, "--advertised-ipmi-port")
        args = [*_without(args, flag, "--kubeconfig"), flag, address, "--kubeconfig", kubeconfig]
        # -P: never the current directory's `vmbmc` folder (a checkout's, say) but the installed package
        return [sys.executable, "-P", "-m", "vmbmc", *args]

    async def _watch(
        self,
        proc: asyncio.subprocess.Process,
        address: str,
        container: dict[str, Any],
        events: PodEvents,
        key: str,
    ) -> None:
        readiness = _probe_url(container, "readinessProbe", address)
        liveness = _probe_url(container, "livenessProbe", address)
        live_spec = container.get("livenessProbe") or {}
        period = float(live_spec.get("periodSeconds", 10))
        threshold = int(live_spec.get("failureThreshold", 3))
        ready_period = float((container.get("readinessProbe") or {}).get("periodSeconds", 10))
        loop = asyncio.get_running_loop()
        next_live = loop.time() + float(live_spec.get("initialDelaySeconds", 0)) + period
        started, starting = loop.time(), True  # this container holds a start slot (MAX_STARTING)

        def release_start_slot() -> None:
            nonlocal starting
            if starting and self._starting is not None:
                starting = False
                self._starting.release()

        ready, live_failures = False, 0
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as http:
                while proc.returncode is None:
                    if readiness is not None:
                        ok = await _get_ok(http, readiness)
                        if ok != ready:
                            ready = ok
                            events.ready(ok)
                    if ready or readiness is None or loop.time() - started > START_WINDOW:
                        release_start_slot()
                    if liveness is not None and loop.time() >= next_live:
                        next_live = loop.time() + period
                        live_failures = 0 if await _get_ok(http, liveness) else live_failures + 1
                        if live_failures >= threshold:  # the kubelet kills the container; it restarts
                            log.info("liveness probe failed", extra={"pod": key})
                            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                                proc.terminate()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(proc.wait(), ready_period if ready else READY_POLL)
        finally:
            release_start_slot()
            # stop() cancels this watcher once the process is gone: forget it here in every case
            if proc.returncode is not None:
                self._running.discard(proc)
        log.info("pod container exited", extra={"pod": key, "code": proc.returncode})
        if not self.closing:
            events.exited(proc.returncode or 0)

    async def stop(self, handle: PodHandle, grace_seconds: float) -> None:
        if handle.data is None:
            return
        proc, watcher = handle.data
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile: nothing to signal
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), max(grace_seconds, 0.1))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._running.discard(proc)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    def signal_all(self, sig: int) -> None:
        """Signal every pod's process at once (from any thread: it only sends the signal): the demo
        stops hundreds of pods in the time one takes, and none waits on a busy emulator loop."""
        for proc in list(self._running):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    proc.send_signal(sig)

    def close(self) -> None:
        """The node shuts down: every pod's process gets SIGTERM at once, and an exit is no longer
        reported (the kubelet would restart the container)."""
        self.closing = True
        self.signal_all(signal.SIGTERM)

    def kill_all(self) -> None:
        """Last resort on shutdown: no process of a pod outlives the demo; the addresses
        are free for others again."""
        self.signal_all(signal.SIGKILL)
        self.release_addresses()


def _ports(container: dict[str, Any]) -> list[tuple[int, int]]:
    """What must be free on an address before a pod gets it: the container's declared ports, its probes'
    ports, and the kbmc's own (declaring ports is optional; another run may hold them there)."""
    kinds = {"UDP": socket.SOCK_DGRAM, "TCP": socket.SOCK_STREAM}
    ports = set(KBMC_PORTS)
    for p in container.get("ports") or []:
        ports.add((kinds.get(str(p.get("protocol", "TCP")), socket.SOCK_STREAM), int(p["containerPort"])))
    for probe in ("readinessProbe", "livenessProbe"):
        port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            ports.add((socket.SOCK_STREAM, int(port)))
    return sorted(ports)


def _probe_url(container: dict[str, Any], probe: str, address: str) -> str | None:
    spec = container.get(probe)
    if not spec:
        return None
    http = spec.get("httpGet")
    if http is None:
        raise ValueError(f"{probe}: only httpGet probes run here")
    port = http["port"]
    if isinstance(port, str) and not port.isdigit():
        named = next((p for p in container.get("ports") or [] if p.get("name") == port), None)
        if named is None:
            raise ValueError(f'{probe}: port "{port}" names no container port')
        port = named["containerPort"]
    return f"http://{address}:{port}{http.get('path', '/')}"


async def _get_ok(http: aiohttp.ClientSession, url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
        async with http.get(url) as resp:
            return 200 <= resp.status < 400
    return False


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
