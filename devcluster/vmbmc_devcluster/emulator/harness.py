"""Run the emulator on its own thread and loop, write a kubeconfig, and reach into it from tests/demo.

Synchronous clients (the kubernetes client, kubectl, kopf's runner) must never share the emulator's
loop (a blocking call on that loop would deadlock it), hence the thread.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import inspect
import ipaddress
import logging
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml

from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.server import create_app

log = logging.getLogger("vmbmc.emulator")
T = TypeVar("T")


def write_kubeconfig(
    path: str | os.PathLike[str],
    url: str,
    token: str,
    *,
    user: str = "admin",
    namespace: str = "default",
    ca_file: str | os.PathLike[str] | None = None,
) -> None:
    """A kubeconfig with current-context set and the token inline, written atomically.

    kubectl sends a bearer token only over TLS (kubernetes/kubectl#744): pass the emulator's
    certificate as `ca_file` for an https:// URL, or kubectl's requests arrive anonymous."""
    cluster: dict[str, str] = {"server": url}
    if ca_file is not None:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca_file).read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "vmbmc-emulator", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "vmbmc-emulator",
                "context": {"cluster": "vmbmc-emulator", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "vmbmc-emulator",
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


class _StoppingQuietly(logging.Filter):
    """While the emulator stops, uvicorn cancels the requests still open (watches of clients that did not
    go first) and logs each as "Exception in ASGI application" with a CancelledError traceback, then
    "Cancel N running task(s)": a stop we asked for, not an error. Everything else passes."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.stopping:
            return True
        cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
        return not cancelled and "timeout graceful shutdown exceeded" not in record.getMessage()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class EmulatorThread:
    def __init__(
        self,
        *,
        port: int = 0,
        kubeconfig: str | os.PathLike[str] | None = None,
        kubevirt: bool = True,
        kubevirt_options: dict | None = None,
        pod_runner: Any = None,
        crds: Sequence[str | os.PathLike[str]] = (),
        host: str = "127.0.0.1",
        rbac: bool = True,
        tls: bool | None = None,
    ) -> None:
        """RBAC is enforced by default (kube-apiserver's `--authorization-mode=RBAC`); `rbac=False`
        authorizes every authenticated or anonymous request (AlwaysAllow, for quick experiments).
        Bad tokens are 401 in both.
        `tls` (default: on with RBAC) serves https with a self-signed certificate (`.ca_file`), since
        kubectl withholds tokens from plain http."""
        if not _is_loopback(host):
            # the emulator has an admin token and no real security boundary
            raise ValueError(f"the emulator listens on loopback only, not on {host!r}")
        self.host, self._port = host, port
        self.rbac = rbac
        self.tls = rbac if tls is None else tls
        self.ca_file: str | None = None
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if kubeconfig is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="vmbmc-emulator-")
            kubeconfig = Path(self._own_dir.name) / "kubeconfig"
        self.kubeconfig = str(kubeconfig)
        self.token = secrets.token_urlsafe(24)
        self._kubevirt, self._kubevirt_options = kubevirt, kubevirt_options or {}
        self._pod_runner, self._crds = pod_runner, list(crds)
        self.emulator: Emulator
        self.kubevirt: Any = None
        self.workloads: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._quiet = _StoppingQuietly()
        self.url = ""

    # --- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then (else ~40 ms stalls)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        scheme = "http"
        if self.tls:
            from vmbmc.redfish.tls import self_signed_certificate

            self._tls_dir = tempfile.TemporaryDirectory(prefix="vmbmc-emulator-tls-")
            cert, key = self_signed_certificate(directory=self._tls_dir.name)
            self.ca_file, self._key_file = str(cert), str(key)
            scheme = "https"
        self.url = f"{scheme}://{self.host}:{self._port}"
        self._thread = threading.Thread(target=self._run, args=(sock,), name="vmbmc-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the emulator failed to start: {self._error}") from self._error
        write_kubeconfig(self.kubeconfig, self.url, self.token, ca_file=self.ca_file)

    @property
    def port(self) -> int:
        return self._port

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(self._main(sock))
        except BaseException as exc:  # report start-up failures to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self, sock: socket.socket) -> None:
        from vmbmc_devcluster.emulator.authn import ADMIN

        self.emulator = Emulator(authorization="RBAC" if self.rbac else "AlwaysAllow")
        self.emulator.security.authn.add_static_token(self.token, ADMIN)
        if self._kubevirt:
            from vmbmc_devcluster.emulator.cdi import install_cdi
            from vmbmc_devcluster.emulator.kubevirt import install_kubevirt
            from vmbmc_devcluster.emulator.volumes import install_volume_binder
            from vmbmc_devcluster.emulator.workloads import install_workloads

            self.kubevirt = install_kubevirt(self.emulator, **self._kubevirt_options)
            self.cdi = install_cdi(self.emulator)
            install_volume_binder(self.emulator)
            self.workloads = install_workloads(self.emulator, pod_runner=self._pod_runner)
        for path in self._crds:
            self._apply_crd_file(path)
        await self.emulator.start()
        config = uvicorn.Config(
            create_app(self.emulator),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=self.ca_file if self.tls else None,
            ssl_keyfile=self._key_file if self.tls else None,
        )
        logging.getLogger("uvicorn.error").addFilter(self._quiet)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        serve = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started and not serve.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await serve
        await self.emulator.stop()

    def _apply_crd_file(self, path: str | os.PathLike[str]) -> None:
        crd_rt = self.emulator.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert crd_rt is not None
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                self.emulator.store.create(crd_rt, doc)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the pods (waiting up to `timeout`), then the server (as long again at most)."""
        if self._pod_runner is not None and self.workloads is not None and self._server is not None:
            with contextlib.suppress(Exception):  # stopping anyway; the kubelet stops them again below
                self.call(self.workloads.kubelet.stop_pods, timeout=timeout)
        self._quiet.stopping = True
        if self._server is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.emulator.store.close_subscriptions)
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():  # else its last cancellations are ahead
            logging.getLogger("uvicorn.error").removeFilter(self._quiet)
        if self._own_dir is not None:
            self._own_dir.cleanup()
        if self.tls and hasattr(self, "_tls_dir"):
            self._tls_dir.cleanup()

    # --- identities -----------------------------------------------------------------------------
    def token_for(self, namespace: str, service_account: str, expiration: int = 3600) -> str:
        """A ServiceAccount token, as TokenRequest issues it (any expiration, even past, for tests)."""

        def issue() -> str:
            authn = self.emulator.security.authn
            return authn.issue_service_account_token(namespace, service_account, expiration=expiration)[0]

        return str(self.call(issue))

    def write_service_account_kubeconfig(
        self, path: str | os.PathLike[str], namespace: str, sa: str, expiration: int = 3600
    ) -> str:
        """Write a kubeconfig that authenticates as ServiceAccount `namespace/sa`; → its token."""
        token = self.token_for(namespace, sa, expiration)
        write_kubeconfig(
            path, self.url, token, user=f"{namespace}-{sa}", namespace=namespace, ca_file=self.ca_file
        )
        return token

    # --- reaching in ----------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Run `fn` (sync or coroutine function) on the emulator loop and return its result."""
        assert self.loop is not None

        async def runner() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"the emulator did not run {getattr(fn, '__name__', 'a call')} within {timeout:g} s: "
                "its loop is overloaded (a busy machine, or more pods than it serves)"
            ) from None
