"""meta.k8s.io/v1 Table output, as kube-apiserver serves it for
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

Public API:

    to_table(rt_kind, objects, printer_columns, *, include_object="Metadata", resource_version="",
             continue_token="", now=None) -> dict
        A Table of ``objects`` (dicts). ``printer_columns`` are a CRD version's additionalPrinterColumns
        (``name``, ``type``, ``format``, ``description``, ``priority``, ``jsonPath``); when empty, a built-in
        printer for ``rt_kind`` is used if there is one (Pod, Service, Deployment, ReplicaSet, Namespace,
        Secret, ConfigMap, ServiceAccount, Endpoints, Lease, CustomResourceDefinition), else the CRD default
        (Name + an Age ``date`` column from ``.metadata.creationTimestamp``). ``include_object``: "None",
        "Metadata" (PartialObjectMetadata, the default as upstream) or "Object".
    jsonpath(obj, expression) -> list
        Kubernetes JSONPath (client-go util/jsonpath subset): ``.a.b``, ``['a.b']``, ``[0]``, ``[-1]``,
        ``[*]`` (``..`` is not supported); filters ``[?(@.type=="Ready")]`` with ``==``/``!=``/``<``/``>``
        on a path, and
        ``[?(@.x)]`` for existence. A leading ``{``/``}`` pair is accepted.
    human_duration(seconds) -> str
        k8s.io/apimachinery/pkg/util/duration.HumanDuration ("45s", "5m3s", "3h", "2d4h", "1y30d").

How cells are rendered, following apiextensions-apiserver's tableconvertor: the first JSONPath result is used;
``string`` columns print it as JSONPath does (scalars as text, maps/lists as compact JSON); ``integer``,
``number`` and ``boolean`` columns carry the JSON value (or null when it has another type); ``date`` columns
are rendered as the age of the timestamp ("5m"), "<invalid>" when it does not parse. A missing value is null.
Built-in printers render Age as a string cell, like the kubelet-side printers in pkg/printers/internalversion.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["human_duration", "jsonpath", "to_table"]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATION_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. "
    "Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
DEFAULT_CRD_COLUMNS: tuple[dict, ...] = (
    {
        "name": "Age",
        "type": "date",
        "description": CREATION_DESCRIPTION,
        "jsonPath": ".metadata.creationTimestamp",
    },
)


# ---------------------------------------------------------------- durations


def human_duration(seconds: float) -> str:
    """duration.HumanDuration: the age kubectl prints."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _age(value: Any, now: _dt.datetime) -> str:
    """translateTimestampSince of the built-in printers."""
    ts = _parse_time(value)
    if ts is None:
        return "<unknown>"
    return human_duration((now - ts).total_seconds())


# ---------------------------------------------------------------- JSONPath

_TOKEN = re.compile(
    r"""\.\.|\.(?P<name>[A-Za-z0-9_$\-]+)|\[(?P<bracket>(?:'[^']*'|"[^"]*"|\?\((?:[^()]|\([^()]*\))*\)|[^\]])*)\]"""
)
_FILTER = re.compile(
    r"""^\?\(\s*@(?P<path>[^=!<>\s]*)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.+?))?\s*\)$"""
)


def _steps(expression: str) -> list[tuple[str, Any]]:
    expr = expression.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if expr.startswith("$"):
        expr = expr[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.group(0) == "..":
            raise ValueError(f"unsupported JSONPath {expression!r} at {pos}")
        pos = m.end()
        if m.group("name") is not None:
            steps.append(("key", m.group("name")))
            continue
        inner = m.group("bracket").strip()
        if inner == "*":
            steps.append(("all", None))
        elif inner.startswith("?"):
            f = _FILTER.match(inner)
            if not f:
                raise ValueError(f"unsupported JSONPath filter {inner!r}")
            steps.append(
                (
                    "filter",
                    (
                        _steps(f.group("path")) if f.group("path") else [],
                        f.group("op"),
                        _literal(f.group("value")) if f.group("op") else None,
                    ),
                )
            )
        elif inner[:1] in ("'", '"'):
            steps.append(("key", inner[1:-1]))
        elif re.fullmatch(r"-?\d+", inner):
            steps.append(("index", int(inner)))
        elif re.fullmatch(r"-?\d*:-?\d*", inner):
            a, b = inner.split(":")
            steps.append(("slice", (int(a) if a else None, int(b) if b else None)))
        else:
            raise ValueError(f"unsupported JSONPath subscript {inner!r}")
    return steps


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in ("'", '"') and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _apply(values: list[Any], steps: list[tuple[str, Any]]) -> list[Any]:
    for kind, arg in steps:
        nxt: list[Any] = []
        for v in values:
            if (kind == "key" and isinstance(v, dict) and arg in v) or (
                kind == "index" and isinstance(v, list) and -len(v) <= arg < len(v)
            ):
                nxt.append(v[arg])
            elif kind == "slice" and isinstance(v, list):
                nxt.extend(v[arg[0] : arg[1]])
            elif kind == "all":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif kind == "filter" and isinstance(v, list):
                nxt.extend(x for x in v if _filter_match(x, *arg))
        values = nxt
    return values


def _filter_match(item: Any, path: list[tuple[str, Any]], op: str | None, want: Any) -> bool:
    found = _apply([item], path)
    if op is None:
        return bool(found)
    if not found:
        return False
    got = found[0]
    if op == "==":
        return got == want
    if op == "!=":
        return got != want
    try:
        return {"<": got < want, ">": got > want, "<=": got <= want, ">=": got >= want}[op]
    except TypeError:
        return False


def jsonpath(obj: Any, expression: str) -> list[Any]:
    """Values ``expression`` selects in ``obj`` (empty when nothing matches)."""
    return _apply([obj], _steps(expression))


# ---------------------------------------------------------------- cells


def _go_float(f: float) -> str:
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    return repr(f)


def _print_text(value: Any) -> str:
    """JSONPath.PrintResults: maps/lists as compact JSON, scalars via fmt.Fprint."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _crd_cell(column_type: str, value: Any, now: _dt.datetime) -> Any:
    """tableconvertor.cellForJSONValue (and the string branch that prints through JSONPath)."""
    if value is None:
        return None
    if column_type == "string":
        return _print_text(value)
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        ts = _parse_time(value)
        if ts is None:
            return "<invalid>"
        return human_duration((now - ts).total_seconds())
    return None


def _column(
    name: str, type_: str = "string", *, fmt: str = "", description: str = "", priority: int = 0
) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name_column() -> dict:
    return _column("Name", fmt="name", description=NAME_DESCRIPTION)


def _crd_rows(objects: Sequence[dict], columns: Sequence[dict], now: _dt.datetime) -> list[list[Any]]:
    compiled = []
    for c in columns:
        try:
            compiled.append(_steps(c.get("jsonPath", "")))
        except ValueError:
            compiled.append(None)  # an unparsable column prints nothing, as a JSONPath error does upstream
    rows = []
    for obj in objects:
        cells: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
        for column, steps in zip(columns, compiled, strict=True):
            found = _apply([obj], steps) if steps is not None else []
            cells.append(_crd_cell(column.get("type", "string"), found[0], now) if found else None)
        rows.append(cells)
    return rows


# ------------------------------------------------------ built-in printers (pkg/printers/internalversion)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _none(text: str) -> str:
    return text if text else "<none>"


def _pod_cells(pod: dict, now: _dt.datetime) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    gate_text = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gate_text = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    return [
        _meta(pod).get("name", ""),
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(_meta(pod).get("creationTimestamp"), now),
        _none(status.get("podIP", "")),
        _none(spec.get("nodeName", "")),
        _none(status.get("nominatedNodeName", "")),
        gate_text,
    ]


def _service_cells(svc: dict, now: _dt.datetime) -> list[Any]:
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if svc_type == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        external += [i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")]
        external_text = ",".join(external) if external else "<pending>"
    elif svc_type == "ExternalName":
        external_text = spec.get("externalName", "")
    else:
        external_text = ",".join(external) if external else "<none>"
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port')}{node}/{proto}")
    selector = spec.get("selector") or {}
    return [
        _meta(svc).get("name", ""),
        svc_type,
        _none(spec.get("clusterIP", "")),
        external_text,
        ",".join(ports) if ports else "<none>",
        _age(_meta(svc).get("creationTimestamp"), now),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if selector else "<none>",
    ]


def _selector_text(selector: dict | None) -> str:
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        op = expr.get("operator", "")
        if op in ("In", "NotIn"):
            parts.append(f"{expr.get('key')} {op.lower()} ({values})")
        elif op == "Exists":
            parts.append(str(expr.get("key")))
        elif op == "DoesNotExist":
            parts.append(f"!{expr.get('key')}")
    return ",".join(parts) if parts else "<none>"


def _containers_images(template: dict) -> tuple[str, str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _deployment_cells(obj: dict, now: _dt.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    desired = spec.get("replicas", 1)
    names, images = _containers_images(spec.get("template") or {})
    return [
        _meta(obj).get("name", ""),
        f"{status.get('readyReplicas', 0)}/{desired}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        _age(_meta(obj).get("creationTimestamp"), now),
        names,
        images,
        _selector_text(spec.get("selector")),
    ]


def _replicaset_cells(obj: dict, now: _dt.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers_images(spec.get("template") or {})
    return [
        _meta(obj).get("name", ""),
        int(spec.get("replicas", 1)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        _age(_meta(obj).get("creationTimestamp"), now),
        names,
        images,
        _selector_text(spec.get("selector")),
    ]


def _endpoints_text(obj: dict) -> str:
    pairs = []
    for subset in obj.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for addr in subset.get("addresses") or []:
            for port in ports:
                pairs.append(f"{addr.get('ip')}:{port}" if port is not None else str(addr.get("ip")))
    if not pairs:
        return "<none>"
    text = ",".join(pairs[:3])
    return text + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")


_Printer = tuple[list[dict], Callable[[dict, _dt.datetime], list[Any]]]


def _age_col() -> dict:
    return _column("Age", description=CREATION_DESCRIPTION)


def _simple(*middle: tuple[str, str, Callable[[dict], Any]]) -> _Printer:
    columns = [_name_column(), *(_column(n, t) for n, t, _ in middle), _age_col()]

    def cells(obj: dict, now: _dt.datetime) -> list[Any]:
        return [
            _meta(obj).get("name", ""),
            *(f(obj) for _, _, f in middle),
            _age(_meta(obj).get("creationTimestamp"), now),
        ]

    return columns, cells


BUILTIN_PRINTERS: dict[str, _Printer] = {
    "Pod": (
        [
            _name_column(),
            _column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", description="The aggregate status of the containers in this pod."),
            _column(
                "Restarts",
                description="The number of times the containers in this pod have been restarted "
                "and when the last container in this pod has restarted.",
            ),
            _age_col(),
            _column("IP", priority=1, description="podIP address allocated to the pod."),
            _column(
                "Node",
                priority=1,
                description="NodeName is a request to schedule this pod onto a specific node.",
            ),
            _column(
                "Nominated Node",
                priority=1,
                description="nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            _column(
                "Readiness Gates",
                priority=1,
                description="If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        _pod_cells,
    ),
    "Service": (
        [
            _name_column(),
            _column("Type", description="type determines how the Service is exposed."),
            _column("Cluster-IP", description="clusterIP is the IP address of the service."),
            _column(
                "External-IP",
                description="List of IP addresses for which nodes in the cluster will also "
                "accept traffic for this service.",
            ),
            _column("Port(s)", description="The list of ports that are exposed by this service."),
            _age_col(),
            _column(
                "Selector",
                priority=1,
                description="Route service traffic to pods with label keys and values "
                "matching this selector.",
            ),
        ],
        _service_cells,
    ),
    "Deployment": (
        [
            _name_column(),
            _column("Ready", description="Number of the pod with ready state"),
            _column(
                "Up-to-date",
                "integer",
                description="Total number of non-terminated pods targeted by this "
                "deployment that have the desired template spec.",
            ),
            _column(
                "Available",
                "integer",
                description="Total number of available pods (ready for at least "
                "minReadySeconds) targeted by this deployment.",
            ),
            _age_col(),
            _column("Containers", priority=1, description="Names of each container in the template."),
            _column("Images", priority=1, description="Images referenced by each container in the template."),
            _column("Selector", priority=1, description="Label selector for pods."),
        ],
        _deployment_cells,
    ),
    "ReplicaSet": (
        [
            _name_column(),
            _column("Desired", "integer", description="Replicas is the number of desired replicas."),
            _column(
                "Current", "integer", description="Replicas is the most recently observed number of replicas."
            ),
            _column("Ready", "integer", description="The number of ready replicas for this replica set."),
            _age_col(),
            _column("Containers", priority=1, description="Names of each container in the template."),
            _column("Images", priority=1, description="Images referenced by each container in the template."),
            _column("Selector", priority=1, description="Selector is a label query over pods."),
        ],
        _replicaset_cells,
    ),
    "Namespace": _simple(("Status", "string", lambda o: (o.get("status") or {}).get("phase", "Active"))),
    "Secret": _simple(
        ("Type", "string", lambda o: o.get("type", "Opaque")),
        ("Data", "string", lambda o: str(len(o.get("data") or {}) + len(o.get("stringData") or {}))),
    ),
    "ConfigMap": _simple(
        ("Data", "string", lambda o: str(len(o.get("data") or {}) + len(o.get("binaryData") or {})))
    ),
    "ServiceAccount": _simple(("Secrets", "string", lambda o: str(len(o.get("secrets") or [])))),
    "Endpoints": _simple(("Endpoints", "string", _endpoints_text)),
    "Lease": _simple(("Holder", "string", lambda o: (o.get("spec") or {}).get("holderIdentity", ""))),
}


def _crd_definition_printer() -> _Printer:
    columns = [_name_column(), _column("Created At", "date", description=CREATION_DESCRIPTION)]

    def cells(obj: dict, now: _dt.datetime) -> list[Any]:
        ts = _parse_time(_meta(obj).get("creationTimestamp"))
        text = ts.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None
        return [_meta(obj).get("name", ""), text]

    return columns, cells


BUILTIN_PRINTERS["CustomResourceDefinition"] = _crd_definition_printer()


# ---------------------------------------------------------------- the Table


def _row_object(obj: dict, include_object: str) -> Any:
    if include_object == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def to_table(
    rt_kind: str,
    objects: Sequence[dict],
    printer_columns: Sequence[dict] | None = (),
    *,
    include_object: str = "Metadata",
    resource_version: str = "",
    continue_token: str = "",
    now: _dt.datetime | None = None,
) -> dict:
    """A meta.k8s.io/v1 Table for ``objects`` of kind ``rt_kind``."""
    now = now or _dt.datetime.now(_dt.UTC)
    if printer_columns:
        columns = list(printer_columns)
        definitions = [_name_column()] + [
            _column(
                c.get("name", ""),
                c.get("type", "string"),
                fmt=c.get("format", ""),
                description=c.get("description", ""),
                priority=int(c.get("priority", 0)),
            )
            for c in columns
        ]
        cells = _crd_rows(objects, columns, now)
    elif rt_kind in BUILTIN_PRINTERS:
        definitions, printer = BUILTIN_PRINTERS[rt_kind]
        definitions = [dict(d) for d in definitions]
        cells = [printer(obj, now) for obj in objects]
    else:
        definitions = [_name_column()] + [
            _column(c["name"], c["type"], description=c["description"]) for c in DEFAULT_CRD_COLUMNS
        ]
        cells = _crd_rows(objects, DEFAULT_CRD_COLUMNS, now)
    rows = []
    for obj, row_cells in zip(objects, cells, strict=True):
        row: dict[str, Any] = {"cells": row_cells}
        if include_object != "None":
            row["object"] = _row_object(obj, include_object)
        else:
            row["object"] = None
        rows.append(row)
    metadata: dict[str, str] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
