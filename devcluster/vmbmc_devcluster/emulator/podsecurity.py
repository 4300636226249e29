"""Pod Security admission, as kube-apiserver's built-in `PodSecurity` plug-in (k8s.io/pod-security-admission).

The Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
`privileged` (no checks), `baseline` and `restricted` (baseline plus its own checks, some of which
replace a baseline one), each at a policy version (`latest` or `v1.x`). The checks, their versions,
their order and their messages follow policy/check_*.go; `evaluate` answers with the failed checks.

Admission (admission/admission.go): a namespace's labels `pod-security.kubernetes.io/<mode>` and
`<mode>-version` (mode: enforce, audit, warn) pick the policy, privileged:latest by default.
- Pods (create, and updates that change an image or add an ephemeral container): a violation of the
  enforce level is a 403 `pods "x" is forbidden: violates PodSecurity "restricted:latest": …`; of the
  warn level a `Warning` header `would violate PodSecurity …`; of the audit level an audit annotation
  (kept in `PodSecurityAdmission.audit`, the emulator has no audit log).
- Workload resources (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
  ReplicationControllers, PodTemplates): warn and audit only, never enforce.
- Namespaces: invalid labels are refused (422) on create and when changed; a stricter enforce level
  answers with warnings naming the existing pods that violate it.
An unparsable enforce level means restricted (fail closed); an unparsable audit or warn level means
privileged (fail open); an unparsable version means latest.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmbmc_devcluster.emulator.apiwarnings import add_warning
from vmbmc_devcluster.emulator.errors import ApiError, invalid

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
Version = tuple[int, int]
MAX_PODS_TO_CHECK = 3000  # namespaceMaxPodsToCheck


# --- levels, versions, namespace policies (api/helpers.go) ---------------------------------------------
@dataclass(frozen=True)
class LevelVersion:
    level: str = PRIVILEGED
    version: Version | None = None  # None: latest

    def __str__(self) -> str:
        version = "latest" if self.version is None else f"v{self.version[0]}.{self.version[1]}"
        return f"{self.level}:{version}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion = LevelVersion()
    audit: LevelVersion = LevelVersion()
    warn: LevelVersion = LevelVersion()

    @property
    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == PRIVILEGED


_VERSION = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


def parse_level(value: str) -> tuple[str, str | None]:
    if value in LEVELS:
        return value, None
    return RESTRICTED, "must be one of " + ", ".join(LEVELS)


def parse_version(value: str) -> tuple[Version | None, str | None]:
    if value == "latest":
        return None, None
    match = _VERSION.match(value)
    if match is None:
        return None, 'must be "latest" or "v1.x"'
    return (1, int(match.group(1))), None


def _compare_levels(a: str, b: str) -> int:
    order = {PRIVILEGED: 0, BASELINE: 1, RESTRICTED: 2}
    if a == b:
        return 0
    return 1 if order.get(a, 1) > order.get(b, 1) else -1


def policy_to_evaluate(
    labels: dict[str, str] | None, defaults: Policy = Policy()
) -> tuple[Policy, list[dict]]:
    """api.PolicyToEvaluate: the namespace's policy and the label errors (as Status causes)."""
    labels = labels or {}
    errors: list[dict] = []
    modes = {"enforce": defaults.enforce, "audit": defaults.audit, "warn": defaults.warn}

    def err(label: str, value: str, message: str) -> None:
        errors.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {json.dumps(value)}: {message}",
                "field": f"metadata.labels[{label}]",
            }
        )

    has_enforce_level = has_warn_level = has_warn_version = False
    for mode in MODES:
        lv = modes[mode]
        level_label, version_label = LABEL_PREFIX + mode, LABEL_PREFIX + mode + "-version"
        if level_label in labels:
            level, problem = parse_level(labels[level_label])
            if problem:
                err(level_label, labels[level_label], problem)
                if mode != "enforce":
                    level = PRIVILEGED  # fail open for audit and warn; enforce fails closed
            elif mode == "enforce":
                has_enforce_level = True
            has_warn_level = has_warn_level or mode == "warn"
            lv = LevelVersion(level, lv.version)
        if version_label in labels:
            version, problem = parse_version(labels[version_label])
            if problem:
                err(version_label, labels[version_label], problem)
            has_warn_version = has_warn_version or mode == "warn"
            lv = LevelVersion(lv.level, version)
        modes[mode] = lv
    # warn defaults to the enforce level when that is explicitly set and stricter
    enforce, warn = modes["enforce"], modes["warn"]
    if not has_warn_level and has_enforce_level and _compare_levels(enforce.level, warn.level) > 0:
        modes["warn"] = LevelVersion(enforce.level, warn.version if has_warn_version else enforce.version)
    return Policy(modes["enforce"], modes["audit"], modes["warn"]), errors


# --- helpers (policy/helpers.go, visitor.go) ----------------------------------------------------------
def _join_quote(items: Iterable[str]) -> str:
    items = list(items)
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _go_quote(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def _containers(spec: dict) -> list[dict]:
    """initContainers, containers, then ephemeralContainers."""
    out: list[dict] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        out += [c for c in spec.get(key) or [] if isinstance(c, dict)]
    return out


def _sc(obj: dict) -> dict:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _has(obj: dict, key: str) -> bool:
    return obj.get(key) is not None


def _windows(spec: dict) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


def _user_namespace(spec: dict) -> bool:
    """relaxPolicyForUserNamespacePod: hostUsers: false."""
    return spec.get("hostUsers") is False


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(f"{_plural('container', 'containers', len(containers))} {_join_quote(containers)}")
    return setters


Result = tuple[str, str] | None  # (forbidden reason, forbidden detail), None when allowed
CheckFn = Callable[[dict, dict], Result]


# --- baseline checks -----------------------------------------------------------------------------------
def app_armor_profile(meta: dict, spec: dict) -> Result:
    allowed_types = ("RuntimeDefault", "Localhost")
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("appArmorProfile")
    pod_bad = isinstance(pod_profile, dict) and pod_profile.get("type") not in allowed_types
    if pod_bad:
        bad_values.add(str(pod_profile.get("type") or ""))
    bad: list[str] = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if isinstance(profile, dict) and profile.get("type") not in allowed_types:
            bad.append(c.get("name", ""))
            bad_values.add(str(profile.get("type") or ""))
    setters = _setters(pod_bad, bad)
    annotations = sorted(
        f"{k}={_go_quote(v)}"
        for k, v in (meta.get("annotations") or {}).items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and not (not v or v == "runtime/default" or str(v).startswith("localhost/"))
    )
    values = sorted(bad_values) + annotations
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (
        _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
        f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(values)}",
    )


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def capabilities_baseline(meta: dict, spec: dict) -> Result:
    bad: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        added = [str(x) for x in (_sc(c).get("capabilities") or {}).get("add") or []]
        extra = [x for x in added if x not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(c.get("name", ""))
            caps.update(extra)
    if not bad:
        return None
    return (
        "non-default capabilities",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} must not include "
        f"{_join_quote(sorted(caps))} in securityContext.capabilities.add",
    )


def host_namespaces(meta: dict, spec: dict) -> Result:
    found = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return ("host namespaces", ", ".join(found)) if found else None


def host_path_volumes(meta: dict, spec: dict) -> Result:
    bad = [
        v.get("name", "") for v in spec.get("volumes") or [] if isinstance(v, dict) and _has(v, "hostPath")
    ]
    if not bad:
        return None
    return "hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)}"


def host_ports(meta: dict, spec: dict) -> Result:
    bad: list[str] = []
    ports: set[int] = set()
    for c in _containers(spec):
        used = [int(p.get("hostPort") or 0) for p in c.get("ports") or [] if isinstance(p, dict)]
        used = [p for p in used if p != 0]
        if used:
            bad.append(c.get("name", ""))
            ports.update(used)
    if not bad:
        return None
    shown = ", ".join(sorted(str(p) for p in ports))  # sets.String: sorted as strings
    return (
        "hostPort",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
        f"{_plural('uses', 'use', len(bad))} {_plural('hostPort', 'hostPorts', len(ports))} {shown}",
    )


def host_probes_and_lifecycle(meta: dict, spec: dict) -> Result:
    bad: set[str] = set()
    hosts: set[str] = set()

    def handler_hosts(handler: Any) -> list[str]:
        if not isinstance(handler, dict):
            return []
        found = []
        for key in ("httpGet", "tcpSocket"):
            host = (handler.get(key) or {}).get("host") if isinstance(handler.get(key), dict) else None
            if host:
                found.append(str(host))
        return found

    for c in _containers(spec):
        lifecycle = c.get("lifecycle") if isinstance(c.get("lifecycle"), dict) else {}
        handlers = [c.get("livenessProbe"), c.get("readinessProbe"), c.get("startupProbe")]
        handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in handlers:
            found = handler_hosts(handler)
            if found:
                bad.add(c.get("name", ""))
                hosts.update(found)
    if not bad:
        return None
    return (
        "probe or lifecycle host",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(sorted(bad))} "
        f"{_plural('uses', 'use', len(bad))} "
        f"{_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} "
        f"{_join_quote(sorted(hosts))}",
    )


def privileged(meta: dict, spec: dict) -> Result:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return (
        "privileged",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
        "must not set securityContext.privileged=true",
    )


def proc_mount_1_0(meta: dict, spec: dict) -> Result:
    bad: list[str] = []
    types: set[str] = set()
    for c in _containers(spec):
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(c.get("name", ""))
            types.add(str(mount))
    if not bad:
        return None
    return (
        "procMount",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
        f"must not set securityContext.procMount to {_join_quote(sorted(types))}",
    )


def proc_mount_1_35(meta: dict, spec: dict) -> Result:
    return None if _user_namespace(spec) else proc_mount_1_0(meta, spec)


def _se_linux(allowed_types: frozenset[str]) -> CheckFn:
    def check(meta: dict, spec: dict) -> Result:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: dict) -> bool:
            ok = True
            if str(opts.get("type") or "") not in allowed_types:
                ok = False
                bad_types.add(str(opts.get("type") or ""))
            for key in ("user", "role"):
                if opts.get(key):
                    ok = False
                    flags[key] = True
            return ok

        pod_opts = _sc(spec).get("seLinuxOptions")
        pod_bad = isinstance(pod_opts, dict) and not valid(pod_opts)
        bad = [
            c.get("name", "")
            for c in _containers(spec)
            if isinstance(_sc(c).get("seLinuxOptions"), dict) and not valid(_sc(c)["seLinuxOptions"])
        ]
        setters = _setters(pod_bad, bad)
        if not setters:
            return None
        data = []
        if bad_types:
            data.append(f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return (
            "seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
        )

    return check


_SELINUX_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_1_31 = _SELINUX_1_0 | {"container_engine_t"}

_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def _valid_seccomp(profile_type: Any) -> bool:
    return profile_type in ("Localhost", "RuntimeDefault")


def seccomp_baseline_1_0(meta: dict, spec: dict) -> Result:
    annotations = meta.get("annotations") or {}

    def valid(v: str) -> bool:
        return v in ("runtime/default", "docker/default") or v.startswith("localhost/")

    forbidden: set[str] = set()
    keys = [_SECCOMP_POD_ANNOTATION] + [
        _SECCOMP_CONTAINER_PREFIX + c.get("name", "") for c in _containers(spec)
    ]
    for key in keys:
        if key in annotations and not valid(str(annotations[key])):
            forbidden.add(f"{key}={_go_quote(annotations[key])}")
    if not forbidden:
        return None
    return (
        "seccompProfile",
        f"forbidden {_plural('annotation', 'annotations', len(forbidden))} {', '.join(sorted(forbidden))}",
    )


def _seccomp_fields(spec: dict) -> tuple[bool, bool, set[str], list[str], list[str]]:
    """(pod set to a bad type, pod set to a good type, bad values, explicitly bad, unset containers)."""
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = pod_set = False
    if isinstance(pod_profile, dict):
        if _valid_seccomp(pod_profile.get("type")):
            pod_set = True
        else:
            pod_bad = True
            bad_values.add(str(pod_profile.get("type") or ""))
    explicit: list[str] = []
    unset: list[str] = []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if isinstance(profile, dict):
            if not _valid_seccomp(profile.get("type")):
                explicit.append(c.get("name", ""))
                bad_values.add(str(profile.get("type") or ""))
        else:
            unset.append(c.get("name", ""))
    return pod_bad, pod_set, bad_values, explicit, unset


def seccomp_baseline_1_19(meta: dict, spec: dict) -> Result:
    pod_bad, _, values, explicit, _ = _seccomp_fields(spec)
    setters = _setters(pod_bad, explicit)
    if not setters:
        return None
    return (
        "seccompProfile",
        f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
        f"{_join_quote(sorted(values))}",
    )


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: dict, spec: dict) -> Result:
        names = [str(s.get("name", "")) for s in _sc(spec).get("sysctls") or [] if isinstance(s, dict)]
        bad = [name for name in names if name not in allowed]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None

    return check


_SYSCTLS_1_0 = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    }
)
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
_SYSCTLS_1_37 = _SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def windows_host_process(meta: dict, spec: dict) -> Result:
    def host_process(sc: dict) -> bool:
        return (sc.get("windowsOptions") or {}).get("hostProcess") is True

    bad = [c.get("name", "") for c in _containers(spec) if host_process(_sc(c))]
    setters = _setters(host_process(_sc(spec)), bad)
    if not setters:
        return None
    return (
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


# --- restricted checks ---------------------------------------------------------------------------------
def allow_privilege_escalation_1_8(meta: dict, spec: dict) -> Result:
    bad = [
        c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
        "must set securityContext.allowPrivilegeEscalation=false",
    )


def capabilities_restricted_1_22(meta: dict, spec: dict) -> Result:
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden: set[str] = set()
    for c in _containers(spec):
        caps = _sc(c).get("capabilities")
        if not isinstance(caps, dict):
            missing_drop.append(c.get("name", ""))
            continue
        if "ALL" not in (caps.get("drop") or []):
            missing_drop.append(c.get("name", ""))
        extra = [str(x) for x in caps.get("add") or [] if x != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.get("name", ""))
            forbidden.update(extra)
    details = []
    if missing_drop:
        details.append(
            f"{_plural('container', 'containers', len(missing_drop))} {_join_quote(missing_drop)} "
            'must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_plural('container', 'containers', len(adding))} {_join_quote(adding)} "
            f"must not include {_join_quote(sorted(forbidden))} in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
_RESTRICTED_VOLUMES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)


def restricted_volumes(meta: dict, spec: dict) -> Result:
    bad: list[str] = []
    types: set[str] = set()
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict) or any(_has(v, k) for k in _ALLOWED_VOLUMES):
            continue
        bad.append(v.get("name", ""))
        types.add(next((k for k in _RESTRICTED_VOLUMES if _has(v, k)), "unknown"))
    if not bad:
        return None
    return (
        "restricted volume types",
        f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} {_plural('uses', 'use', len(bad))} "
        f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
        f"{_join_quote(sorted(types))}",
    )


def run_as_non_root_1_0(meta: dict, spec: dict) -> Result:
    pod_value = _sc(spec).get("runAsNonRoot")
    pod_bad, pod_ok = pod_value is False, pod_value is True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if value is False:
                explicit.append(c.get("name", ""))
        elif not pod_ok:
            implicit.append(c.get("name", ""))
    setters = _setters(pod_bad, explicit)
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_plural('container', 'containers', len(implicit))} {_join_quote(implicit)} "
            "must set securityContext.runAsNonRoot=true",
        )
    return None


def run_as_non_root_1_35(meta: dict, spec: dict) -> Result:
    return None if _user_namespace(spec) else run_as_non_root_1_0(meta, spec)


def run_as_user_1_23(meta: dict, spec: dict) -> Result:
    def root(sc: dict) -> bool:
        value = sc.get("runAsUser")
        return value is not None and not isinstance(value, bool) and value == 0

    bad = [c.get("name", "") for c in _containers(spec) if root(_sc(c))]
    setters = _setters(root(_sc(spec)), bad)
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


def run_as_user_1_35(meta: dict, spec: dict) -> Result:
    return None if _user_namespace(spec) else run_as_user_1_23(meta, spec)


def seccomp_restricted_1_19(meta: dict, spec: dict) -> Result:
    pod_bad, pod_set, values, explicit, unset = _seccomp_fields(spec)
    setters = _setters(pod_bad, explicit)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
            f"{_join_quote(sorted(values))}",
        )
    if unset and not pod_set:
        return (
            "seccompProfile",
            f"pod or {_plural('container', 'containers', len(unset))} {_join_quote(unset)} "
            'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
        )
    return None


def _not_on_windows(check: CheckFn) -> CheckFn:
    """The 1.25 versions of the restricted checks: Windows pods (spec.os.name) are exempt."""

    def versioned(meta: dict, spec: dict) -> Result:
        return None if _windows(spec) else check(meta, spec)

    return versioned


# --- the registry (policy/registry.go) -----------------------------------------------------------------
@dataclass(frozen=True)
class VersionedCheck:
    minimum: Version
    check: CheckFn
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    versions: tuple[VersionedCheck, ...]

    def at(self, version: Version) -> VersionedCheck | None:
        found = None
        for v in self.versions:
            if v.minimum <= version:
                found = v
        return found


def _v(major: int, minor: int, check: CheckFn, *overrides: str) -> VersionedCheck:
    return VersionedCheck((major, minor), check, overrides)


CHECKS: tuple[Check, ...] = (
    Check("appArmorProfile", BASELINE, (_v(1, 0, app_armor_profile),)),
    Check("capabilities_baseline", BASELINE, (_v(1, 0, capabilities_baseline),)),
    Check("hostNamespaces", BASELINE, (_v(1, 0, host_namespaces),)),
    Check("hostPathVolumes", BASELINE, (_v(1, 0, host_path_volumes),)),
    Check("hostPorts", BASELINE, (_v(1, 0, host_ports),)),
    Check("hostProbesAndHostLifecycle", BASELINE, (_v(1, 34, host_probes_and_lifecycle),)),
    Check("privileged", BASELINE, (_v(1, 0, privileged),)),
    Check("procMount", BASELINE, (_v(1, 0, proc_mount_1_0), _v(1, 35, proc_mount_1_35))),
    Check(
        "seLinuxOptions", BASELINE, (_v(1, 0, _se_linux(_SELINUX_1_0)), _v(1, 31, _se_linux(_SELINUX_1_31)))
    ),
    Check(
        "seccompProfile_baseline",
        BASELINE,
        (_v(1, 0, seccomp_baseline_1_0), _v(1, 19, seccomp_baseline_1_19)),
    ),
    Check(
        "sysctls",
        BASELINE,
        (
            _v(1, 0, _sysctls(_SYSCTLS_1_0)),
            _v(1, 27, _sysctls(_SYSCTLS_1_27)),
            _v(1, 29, _sysctls(_SYSCTLS_1_29)),
            _v(1, 32, _sysctls(_SYSCTLS_1_32)),
            _v(1, 37, _sysctls(_SYSCTLS_1_37)),
        ),
    ),
    Check("windowsHostProcess", BASELINE, (_v(1, 0, windows_host_process),)),
    Check(
        "allowPrivilegeEscalation",
        RESTRICTED,
        (
            _v(1, 8, allow_privilege_escalation_1_8),
            _v(1, 25, _not_on_windows(allow_privilege_escalation_1_8)),
        ),
    ),
    Check(
        "capabilities_restricted",
        RESTRICTED,
        (
            _v(1, 22, capabilities_restricted_1_22, "capabilities_baseline"),
            _v(1, 25, _not_on_windows(capabilities_restricted_1_22), "capabilities_baseline"),
        ),
    ),
    Check("procMount_restricted", RESTRICTED, (_v(1, 35, proc_mount_1_0, "procMount"),)),
    Check("restrictedVolumes", RESTRICTED, (_v(1, 0, restricted_volumes, "hostPathVolumes"),)),
    Check("runAsNonRoot", RESTRICTED, (_v(1, 0, run_as_non_root_1_0), _v(1, 35, run_as_non_root_1_35))),
    Check("runAsUser", RESTRICTED, (_v(1, 23, run_as_user_1_23), _v(1, 35, run_as_user_1_35))),
    Check(
        "seccompProfile_restricted",
        RESTRICTED,
        (
            _v(1, 19, seccomp_restricted_1_19, "seccompProfile_baseline"),
            _v(1, 25, _not_on_windows(seccomp_restricted_1_19), "seccompProfile_baseline"),
        ),
    ),
)
MAX_VERSION: Version = max(c.versions[-1].minimum for c in CHECKS)
# baseline checks first, then restricted ones, each sorted by ID (Go's byte order)
_ORDER = sorted(c.id for c in CHECKS if c.level == BASELINE) + sorted(
    c.id for c in CHECKS if c.level == RESTRICTED
)


def checks_for(lv: LevelVersion) -> list[tuple[str, CheckFn]]:
    """The checks that level and version run, in upstream order."""
    if lv.level == PRIVILEGED:
        return []
    version = MAX_VERSION if lv.version is None or lv.version > MAX_VERSION else lv.version
    chosen: dict[str, VersionedCheck] = {}
    for check in CHECKS:
        if check.level == BASELINE or lv.level == RESTRICTED:
            at = check.at(version)
            if at is not None:
                chosen[check.id] = at
    overridden = {
        o for c in CHECKS if c.level == RESTRICTED and c.id in chosen for o in chosen[c.id].overrides
    }
    return [(cid, chosen[cid].check) for cid in _ORDER if cid in chosen and cid not in overridden]


@dataclass(frozen=True)
class Evaluation:
    """policy.AggregateCheckResult: the failed checks' reasons and details."""

    violations: tuple[tuple[str, str], ...]

    @property
    def allowed(self) -> bool:
        return not self.violations

    @property
    def forbidden_reason(self) -> str:
        return ", ".join(r for r, _ in self.violations)

    @property
    def forbidden_detail(self) -> str:
        return ", ".join(f"{r} ({d})" if d else r for r, d in self.violations)


def evaluate(lv: LevelVersion | str, meta: dict | None, spec: dict | None) -> Evaluation:
    """Evaluate a pod's metadata and spec against a level (`"restricted"` means restricted:latest)."""
    if isinstance(lv, str):
        lv = LevelVersion(lv)
    meta, spec = meta or {}, spec or {}
    results = []
    for _cid, check in checks_for(lv):
        result = check(meta, spec)
        if result is not None:
            results.append((result[0] or "unknown forbidden reason", result[1]))
    return Evaluation(tuple(results))


def evaluate_pod(pod: dict, level: LevelVersion | str = RESTRICTED) -> Evaluation:
    return evaluate(level, pod.get("metadata"), pod.get("spec"))


# --- admission -----------------------------------------------------------------------------------------
# pod-controller kinds (admission.DefaultPodSpecExtractor) -> how to reach the pod template
WORKLOADS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "replicationcontrollers"): ("spec", "template"),
    ("", "podtemplates"): ("template",),
    ("apps", "replicasets"): ("spec", "template"),
    ("apps", "deployments"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"),
    ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}


def _template(obj: dict, path: tuple[str, ...]) -> dict | None:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _significant_pod_update(pod: dict, old: dict) -> bool:
    """isSignificantPodUpdate: only images and ephemeral containers can change a pod's security."""
    spec, old_spec = pod.get("spec") or {}, old.get("spec") or {}
    for key in ("containers", "initContainers"):
        new_list, old_list = spec.get(key) or [], old_spec.get(key) or []
        if len(new_list) != len(old_list):
            return True
        if any(
            (a or {}).get("image") != (b or {}).get("image") for a, b in zip(new_list, old_list, strict=True)
        ):
            return True
    old_ephemeral = {
        c.get("name"): c for c in old_spec.get("ephemeralContainers") or [] if isinstance(c, dict)
    }
    for c in spec.get("ephemeralContainers") or []:
        before = old_ephemeral.get((c or {}).get("name"))
        if before is None or before.get("image") != c.get("image"):
            return True
    return False


def _only_status_changed(obj: dict, old: dict | None) -> bool:
    """A write through the status subresource (which the plug-in ignores for pod controllers)."""
    if old is None:
        return False

    def strip(o: dict) -> dict:
        meta = {
            k: v for k, v in (o.get("metadata") or {}).items() if k not in ("resourceVersion", "generation")
        }
        return {**{k: v for k, v in o.items() if k != "status"}, "metadata": meta}

    return strip(obj) == strip(old)


class PodSecurityAdmission:
    """The PodSecurity plug-in for one emulator (default policy privileged:latest, no exemptions)."""

    def __init__(self, emulator: Emulator, defaults: Policy = Policy()) -> None:
        self.emulator = emulator
        self.defaults = defaults
        # audit annotations of the requests that had any (the emulator keeps no audit log)
        self.audit: deque[dict[str, Any]] = deque(maxlen=1000)

    def _labels(self, namespace: str) -> dict[str, str] | None:
        ns_rt = self.emulator.registry.get("", "v1", "namespaces")
        ns = self.emulator.store.try_get(ns_rt, None, namespace) if ns_rt is not None else None
        return None if ns is None else (ns["metadata"].get("labels") or {})

    def _record(self, kind: str, obj: dict, annotations: dict[str, str]) -> None:
        if annotations:
            meta = obj.get("metadata") or {}
            self.audit.append(
                {
                    "resource": kind,
                    "namespace": meta.get("namespace", ""),
                    "name": meta.get("name", ""),
                    "annotations": {f"{LABEL_PREFIX}{k}": v for k, v in annotations.items()},
                }
            )

    def _evaluate(
        self,
        policy: Policy,
        errors: list[dict],
        meta: dict,
        spec: dict,
        *,
        enforce: bool,
        kind: str,
        obj: dict,
    ) -> None:
        """EvaluatePod: raise on an enforce violation, else add the warn violation as a warning."""
        annotations: dict[str, str] = {}
        if errors:
            annotations["error"] = "Failed to parse policy: " + ", ".join(
                f"{e['field']}: {e['message']}" for e in errors
            )
        cache: dict[LevelVersion, Evaluation] = {}

        def result(lv: LevelVersion) -> Evaluation:
            if lv not in cache:
                cache[lv] = evaluate(lv, meta, spec)
            return cache[lv]

        denial: ApiError | None = None
        if enforce:
            annotations["enforce-policy"] = str(policy.enforce)
            enforced = result(policy.enforce)
            if not enforced.allowed:
                name = (obj.get("metadata") or {}).get("name", "")
                denial = ApiError(
                    403,
                    "Forbidden",
                    f'pods "{name}" is forbidden: violates PodSecurity "{policy.enforce}": '
                    f"{enforced.forbidden_detail}",
                    details={"name": name, "kind": "pods"},
                )
        audited = result(policy.audit)
        if not audited.allowed:
            annotations["audit-violations"] = (
                f'would violate PodSecurity "{policy.audit}": {audited.forbidden_detail}'
            )
        self._record(kind, obj, annotations)
        if denial is not None:
            raise denial  # no warnings on a request that is refused
        warned = result(policy.warn)
        if not warned.allowed:
            add_warning(f'would violate PodSecurity "{policy.warn}": {warned.forbidden_detail}')

    # ------------------------------------------------------------------------------ the hooks
    def admit_pod(self, obj: dict, old: dict | None) -> dict:
        labels = self._labels((obj.get("metadata") or {}).get("namespace", ""))
        if labels is None:
            return obj
        policy, errors = policy_to_evaluate(labels, self.defaults)
        if not errors and policy.fully_privileged:
            return obj
        if old is not None and not _significant_pod_update(obj, old):
            return obj
        self._evaluate(
            policy,
            errors,
            obj.get("metadata") or {},
            obj.get("spec") or {},
            enforce=True,
            kind="pods",
            obj=obj,
        )
        return obj

    def workload_hook(self, plural: str, path: tuple[str, ...]) -> Callable[[dict, dict | None], dict]:
        def admit(obj: dict, old: dict | None) -> dict:
            if _only_status_changed(obj, old):
                return obj
            labels = self._labels((obj.get("metadata") or {}).get("namespace", ""))
            if labels is None:
                return obj
            policy, errors = policy_to_evaluate(labels, self.defaults)
            if not errors and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
                return obj
            template = _template(obj, path)
            if template is None:
                return obj
            self._evaluate(
                policy,
                errors,
                template.get("metadata") or {},
                template.get("spec") or {},
                enforce=False,
                kind=plural,
                obj=obj,
            )
            return obj

        return admit

    def admit_namespace(self, obj: dict, old: dict | None) -> dict:
        name = (obj.get("metadata") or {}).get("name", "")
        policy, errors = policy_to_evaluate((obj.get("metadata") or {}).get("labels"), self.defaults)
        if old is None:
            if errors:
                raise self._invalid(name, errors)
            return obj
        old_policy, old_errors = policy_to_evaluate((old.get("metadata") or {}).get("labels"), self.defaults)
        if errors and (not old_errors or errors != old_errors):
            raise self._invalid(name, errors)
        new, before = policy.enforce, old_policy.enforce
        if new == before or new.level == PRIVILEGED:
            return obj
        if new.version == before.version and _compare_levels(new.level, before.level) < 1:
            return obj
        for warning in self.existing_pod_warnings(name, new):
            add_warning(warning)
        return obj

    def _invalid(self, name: str, causes: list[dict]) -> ApiError:
        ns_rt = self.emulator.registry.get("", "v1", "namespaces")
        return invalid(ns_rt, name, causes)

    def existing_pod_warnings(self, namespace: str, enforce: LevelVersion) -> list[str]:
        """EvaluatePodsInNamespace: which existing pods the new enforce level would refuse."""
        pods_rt = self.emulator.registry.get("", "v1", "pods")
        pods = list(self.emulator.store.iter_raw(pods_rt, namespace)) if pods_rt is not None else []
        total, checked = len(pods), pods[:MAX_PODS_TO_CHECK]
        counts: dict[str, list[Any]] = {}  # reason -> [lexically first pod, number of pods]
        order: list[str] = []
        for pod in checked:
            result = evaluate_pod(pod, enforce)
            if result.allowed:
                continue
            reason, pod_name = result.forbidden_reason, pod["metadata"]["name"]
            if reason not in counts:
                counts[reason] = [pod_name, 0]
                order.append(reason)
            elif pod_name < counts[reason][0]:
                counts[reason][0] = pod_name
            counts[reason][1] += 1
        warnings: list[str] = []
        if len(checked) < total:
            warnings.append(
                f"new PodSecurity enforce level only checked against the first {len(checked)} "
                f"of {total} existing pods"
            )
        if order:
            warnings.append(
                f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level '
                f'"{enforce}"'
            )
        decorated = []
        for reason in order:
            first, count = counts[reason]
            if count == 1:
                decorated.append(f"{first}: {reason}")
            elif count == 2:
                decorated.append(f"{first} (and 1 other pod): {reason}")
            else:
                decorated.append(f"{first} (and {count - 1} other pods): {reason}")
        return warnings + sorted(decorated)


def install_pod_security(emulator: Emulator) -> PodSecurityAdmission:
    """Register the plug-in's admission hooks: pods, namespaces and every pod-controller kind served."""
    plugin = PodSecurityAdmission(emulator)
    hooks = emulator.store.admission_hooks
    hooks.setdefault(("", "pods"), []).append(plugin.admit_pod)
    hooks.setdefault(("", "namespaces"), []).append(plugin.admit_namespace)
    for key, path in WORKLOADS.items():  # storage keys: the hook applies once the kind is served
        hooks.setdefault(key, []).append(plugin.workload_hook(key[1], path))
    return plugin
