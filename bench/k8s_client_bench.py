"""Import cost of Kubernetes client libraries (issue 28): VmRSS of a fresh interpreter after importing a
candidate and building a client from a kubeconfig (no network), the smallest of 3 runs; alone, and on top
of what a kbmc with Redfish has loaded anyway (asyncio, ssl, starlette, uvicorn, anyio, h11).

Candidates that are not installed in the interpreter are reported as such: measure them in a scratch
venv (`python -m venv /tmp/k && /tmp/k/bin/pip install lightkube kubernetes_asyncio kubernetes kr8s
websockets httpx-ws starlette uvicorn`), then `python bench/k8s_client_bench.py --python /tmp/k/bin/python`.

    python bench/k8s_client_bench.py [--python PATH] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BASE_REDFISH = "import asyncio, ssl, anyio, h11, starlette.applications, uvicorn.server\n"
CTX = "ssl.create_default_context(cafile=CA)"
CANDIDATES = {
    "asyncio + ssl": "import asyncio, ssl",
    "asyncio + ssl, a context with the cluster CA": f"import asyncio, ssl\n{CTX}",
    "httpx AsyncClient": f"import asyncio, ssl, httpx\nhttpx.AsyncClient(verify={CTX})",
    "httpx + httpx-ws": f"import asyncio, ssl, httpx, httpx_ws\nhttpx.AsyncClient(verify={CTX})",
    "httpx2 AsyncClient": f"import asyncio, ssl, httpx2\nhttpx2.AsyncClient(verify={CTX})",
    "httpx2 + its WebSocket (wsproto)": "import asyncio, ssl, httpx2, httpx2.websockets\n"
    f"httpx2.AsyncClient(verify={CTX})",
    "lightkube AsyncClient (httpx2)": "import asyncio\nfrom lightkube import AsyncClient, KubeConfig\n"
    "async def main():\n    AsyncClient(KubeConfig.from_file(KUBECONFIG))\nasyncio.run(main())",
    "vmbmc.k8s ApiClient (lightkube config, httpx2)": "import asyncio\n"
    "from vmbmc.k8s.client import ApiClient\n"
    "async def main():\n    await (await ApiClient.connect(KUBECONFIG)).close()\nasyncio.run(main())",
    "kubernetes config": "from kubernetes import config\nconfig.load_kube_config(KUBECONFIG)",
    "kubernetes_asyncio config + ApiClient": "import asyncio\nfrom kubernetes_asyncio import client, config\n"
    "async def main():\n    await config.load_kube_config(KUBECONFIG)\n    client.ApiClient()\n"
    "asyncio.run(main())",
    "kr8s (import)": "import asyncio, kr8s.asyncio",
    "websockets client": "import asyncio, ssl\nfrom websockets.asyncio.client import connect",
}
MEASURE = "\nimport re\nprint(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"


def fixture(directory: Path) -> tuple[Path, Path]:
    """A CA certificate and a kubeconfig naming it (token auth, an https server that is never called)."""
    ca, key = directory / "ca.crt", directory / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(ca), "-days", "1", "-subj", "/CN=bench-ca"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    data = base64.b64encode(ca.read_bytes()).decode()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', "
        f"certificate-authority-data: {data}}}}}]\n"
        "users: [{name: u, user: {token: bench}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return ca, kubeconfig


def rss(python: str, code: str, runs: int, root: Path) -> float | str:
    values = []
    for _ in range(runs):
        cmd = [python, "-c", code + MEASURE]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=root)
        if out.returncode:
            missing = "ModuleNotFoundError" in out.stderr
            return "not installed" if missing else out.stderr.strip().splitlines()[-1]
        values.append(int(out.stdout.split()[-1]) / 1024)
    return round(min(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="vmbmc-k8s-bench-") as tmp:
        ca, kubeconfig = fixture(Path(tmp))
        head = f"CA, KUBECONFIG = {str(ca)!r}, {str(kubeconfig)!r}\n"
        results = {}
        for name, code in CANDIDATES.items():
            alone = rss(args.python, head + code, args.runs, root)
            with_redfish = rss(args.python, head + BASE_REDFISH + code, args.runs, root)
            results[name] = {"alone_mib": alone, "with_redfish_stack_mib": with_redfish}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'candidate':50s} {'alone MiB':>14s} {'+ Redfish stack MiB':>20s}")
    for name, row in results.items():
        print(f"{name:50s} {row['alone_mib']!s:>14s} {row['with_redfish_stack_mib']!s:>20s}")


if __name__ == "__main__":
    main()
