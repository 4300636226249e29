"""Auto-created BMC names (DNS-1035, hashed when long or taken) and label values (hashed past 63
characters)."""

from __future__ import annotations

import hashlib

from vmbmc import naming as n


def h8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def test_plain_name() -> None:
    assert n.bmc_name_for("default", "web-1") == "default-web-1"


def test_dots_and_case() -> None:
    assert n.bmc_name_for("team.a", "Host.Example") == "team-a-host-example"


def test_name_starting_with_a_digit_gets_vm_prefix() -> None:
    assert n.bmc_name_for("1team", "x") == "vm-1team-x"


def test_collision_between_two_vms_uses_the_hash() -> None:
    first = n.bmc_name_for("a-b", "c")
    assert first == "a-b-c"
    second = n.bmc_name_for("a", "b-c", {"a-b-c": "a-b/c"})
    assert second == f"a-b-c-{h8('a/b-c')}"
    # the owner of the plain name keeps it
    assert n.bmc_name_for("a-b", "c", {"a-b-c": "a-b/c"}) == "a-b-c"


def test_long_name_is_cut_and_hashed() -> None:
    ns, name = "namespace-" + "n" * 30, "virtual-machine-" + "v" * 30
    out = n.bmc_name_for(ns, name)
    assert len(out) <= n.MAX_BMC_NAME
    assert out == f"{n.plain_bmc_name(ns, name)[:48].rstrip('-')}-{h8(f'{ns}/{name}')}"
    assert len(n.kbmc_name(out)) <= 63


def test_cut_drops_a_trailing_dash() -> None:
    ns = "a" * 47
    out = n.bmc_name_for(ns, "b" * 20)  # the 48th character is the "-"
    assert out == f"{'a' * 47}-{h8(ns + '/' + 'b' * 20)}"


def test_57_characters_is_still_plain() -> None:
    ns, name = "a" * 20, "b" * 36
    assert n.bmc_name_for(ns, name) == f"{ns}-{name}"


def test_long_label_values() -> None:
    value = "x" * 100
    assert n.label_value(value) == f"{'x' * 54}-{h8(value)}"
    assert len(n.label_value(value)) == 63
    assert n.label_value("short") == "short"


def test_find_existing_needs_labels_and_annotation() -> None:
    bmc = {
        "metadata": {
            "name": "whatever-name",
            "labels": n.bmc_labels("whatever-name", "ns", "vm"),
            "annotations": {n.ANNOTATION_VM: "ns/vm"},
        }
    }
    assert n.find_existing([bmc], "ns", "vm") == "whatever-name"
    assert n.find_existing([bmc], "ns", "other") is None
    bmc["metadata"]["annotations"][n.ANNOTATION_VM] = "ns/other"
    assert n.find_existing([bmc], "ns", "vm") is None


def test_vm_ref_both_styles() -> None:
    meta = {"namespace": "tenant"}
    assert n.vm_ref({"metadata": meta, "spec": {"virtualMachineRef": {"name": "x"}}}) == ("tenant", "x")
    assert n.vm_ref({"metadata": meta, "spec": {"virtualMachineRef": {"namespace": "o", "name": "x"}}}) == (
        "o",
        "x",
    )
    assert n.vm_ref({"metadata": meta, "spec": {"vmNamespace": "s", "vmName": "y"}}) == ("s", "y")
