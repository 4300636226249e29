"""kubectl against the emulator (or a real cluster with --kubeconfig): the verbs this project uses."""

from __future__ import annotations

import json
import uuid

import pytest

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.vmbmc.io
spec:
  group: example.vmbmc.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              phase: {type: string}
"""


@pytest.fixture(scope="module")
def widgets(emulator):
    import subprocess

    from vmbmc_devcluster.testing.plugin import KUBECTL

    subprocess.run(
        [KUBECTL, "--kubeconfig", str(emulator.kubeconfig), "apply", "--validate=false", "-f", "-"],
        input=CRD,
        text=True,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            str(emulator.kubeconfig),
            "wait",
            "--for=condition=established",
            "crd/widgets.example.vmbmc.io",
            "--timeout=30s",
        ],
        check=True,
        capture_output=True,
    )
    return "widgets.example.vmbmc.io"


def _widget(name: str, **spec: object) -> str:
    return json.dumps(
        {"apiVersion": "example.vmbmc.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


def _configmap(name: str) -> str:
    # `kubectl create configmap` sends protobuf, which the emulator does not decode (docs/emulator.md).
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}
    )


def test_get_namespaces_and_api_resources(kubectl):
    out = kubectl("get", "namespaces").stdout
    assert "default" in out and "kube-system" in out
    resources = kubectl("api-resources").stdout
    assert "virtualmachines" in resources and "deployments" in resources


def test_crd_apply_get_printer_columns_and_defaults(kubectl, widgets):
    name = f"w-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "--validate=false", "-f", "-", input=_widget(name, size=3))
    out = kubectl("get", "wdg", name).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "SIZE", "COLOR"]
    assert row.split()[:3] == [name, "3", "red"]  # the schema default was applied
    obj = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert obj["spec"] == {"size": 3, "color": "red"}
    assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]


def test_schema_rejects_invalid_objects_with_422_naming_the_field(kubectl, widgets):
    bad = kubectl(
        "apply", "--validate=false", "-f", "-", input=_widget("bad-enum", size=1, color="green"), check=False
    )
    assert bad.returncode != 0
    assert 'spec.color: Unsupported value: "green"' in bad.stderr
    missing = kubectl("create", "--validate=false", "-f", "-", input=_widget("no-size"), check=False)
    assert "spec.size: Required value" in missing.stderr


def test_unknown_fields_are_pruned(kubectl, widgets):
    name = f"w-{uuid.uuid4().hex[:6]}"
    kubectl("create", "--validate=false", "-f", "-", input=_widget(name, size=2, bogus="x"))
    obj = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert "bogus" not in obj["spec"]


def test_patch_merge_and_json_and_strategic_is_415_on_custom_resources(kubectl, widgets):
    name = f"w-{uuid.uuid4().hex[:6]}"
    kubectl("create", "--validate=false", "-f", "-", input=_widget(name, size=2))
    kubectl("patch", "widget", name, "--type=merge", "-p", '{"spec":{"size":5}}')
    kubectl(
        "patch", "widget", name, "--type=json", "-p", '[{"op":"replace","path":"/spec/color","value":"blue"}]'
    )
    obj = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert obj["spec"] == {"size": 5, "color": "blue"}
    assert obj["metadata"]["generation"] == 3
    smp = kubectl("patch", "widget", name, "-p", '{"spec":{"size":6}}', check=False)
    assert (smp.returncode != 0 and "UnsupportedMediaType" in smp.stderr) or "unknown format" in smp.stderr


def test_status_subresource_is_split(kubectl, widgets):
    name = f"w-{uuid.uuid4().hex[:6]}"
    kubectl("create", "--validate=false", "-f", "-", input=_widget(name, size=2))
    kubectl("patch", "widget", name, "--type=merge", "-p", '{"status":{"phase":"Ignored"}}')
    obj = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert "status" not in obj
    kubectl(
        "patch",
        "widget",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ok"},"spec":{"size":9}}',
    )
    obj = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert obj["status"] == {"phase": "Ok"} and obj["spec"]["size"] == 2


def test_describe_and_delete(kubectl):
    kubectl("create", "--validate=false", "-f", "-", input=_configmap("cm-describe"))
    out = kubectl("describe", "configmap", "cm-describe").stdout
    assert "cm-describe" in out
    kubectl("delete", "configmap", "cm-describe")
    gone = kubectl("get", "configmap", "cm-describe", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_strategic_merge_patch_on_a_deployment_merges_containers_by_name(kubectl):
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smp-demo"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "smp"}},
            "template": {
                "metadata": {"labels": {"app": "smp"}},
                "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
            },
        },
    }
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(dep))
    kubectl(
        "patch",
        "deployment",
        "smp-demo",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}',
    )
    obj = json.loads(kubectl("get", "deployment", "smp-demo", "-o", "json").stdout)
    images = {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
    assert images == {"a": "a:1", "b": "b:2"}


def test_watch_streams_changes_and_ends_with_its_timeout(kubectl):
    kubectl("create", "--validate=false", "-f", "-", input=_configmap("cm-watch"))
    out = kubectl(
        "get",
        "configmap",
        "cm-watch",
        "--watch",
        "--request-timeout=2s",
        "-o",
        "name",
        check=False,
        timeout=30,
    )
    assert "configmap/cm-watch" in out.stdout


def test_bad_input_gets_a_status_not_a_500(emulator):
    import ssl
    import urllib.error
    import urllib.request

    if not emulator.url:
        pytest.skip("raw HTTP checks only against the emulator")
    cases = [
        ("POST", "/api/v1/namespaces/default/configmaps", b"{not json", 400),
        ("GET", "/apis/nope.example.com/v1/things", None, 404),
        ("POST", "/api/v1/namespaces/default/configmaps/x/nonsense", b"{}", 404),
        ("PATCH", "/api/v1/namespaces/default/configmaps/missing", b"{}", 404),
    ]
    tls = ssl.create_default_context(cafile=emulator.ca_file)
    for method, path, body, code in cases:
        req = urllib.request.Request(
            emulator.url + path,
            data=body,
            method=method,
            headers={
                "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json",
                "Authorization": f"Bearer {emulator.token}",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5, context=tls)
        assert err.value.code == code, (method, path)
        status = json.loads(err.value.read())
        assert status["kind"] == "Status" and status["code"] == code
