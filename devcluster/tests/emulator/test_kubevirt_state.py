"""Pure logic of the fake KubeVirt: virt-api answers, runStrategy sync, VM status."""

from __future__ import annotations

import pytest

from vmbmc_devcluster.emulator import kubevirt_state as ks

NOW = "2026-01-01T00:00:00Z"


def vm(
    run_strategy: str | None = "Halted", *, running: bool | None = None, status: dict | None = None
) -> dict:
    spec: dict = {
        "template": {
            "metadata": {"labels": {"kubevirt.io/vm": "vm1"}},
            "spec": {"domain": {"devices": {"disks": [{"name": "root", "disk": {}, "bootOrder": 1}]}}},
        }
    }
    if run_strategy is not None:
        spec["runStrategy"] = run_strategy
    if running is not None:
        spec["running"] = running
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm1", "namespace": "ns", "uid": "vm-uid", "generation": 3},
        "spec": spec,
        "status": status or {},
    }


def vmi(phase: str = "Running", *, uid: str = "vmi-1", deleting: bool = False, paused: bool = False) -> dict:
    obj: dict = {
        "metadata": {"name": "vm1", "namespace": "ns", "uid": uid},
        "spec": {"terminationGracePeriodSeconds": 180},
        "status": {"phase": phase, "conditions": []},
    }
    if phase == "Running":
        obj["status"]["conditions"].append({"type": "Ready", "status": "True", "lastTransitionTime": NOW})
    if paused:
        obj["status"]["conditions"].append(ks.paused_condition(NOW))
    if deleting:
        obj["metadata"]["deletionTimestamp"] = NOW
    return obj


class TestRunStrategy:
    @pytest.mark.parametrize(
        ("rs", "running", "want"),
        [("Manual", None, "Manual"), (None, True, "Always"), (None, False, "Halted"), (None, None, "Halted")],
    )
    def test_resolution(self, rs: str | None, running: bool | None, want: str) -> None:
        assert ks.run_strategy(vm(rs, running=running)) == want

    def test_both_set_is_internal_error(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.run_strategy(vm("Always", running=True))
        assert e.value.code == 500
        assert "mutually exclusive" in e.value.message


class TestStart:
    def test_halted_sets_always(self) -> None:
        plan = ks.plan_start(vm("Halted"), None, {})
        assert plan.vm is not None and plan.vm["spec"]["runStrategy"] == "Always"

    def test_legacy_running_flag_is_flipped(self) -> None:
        plan = ks.plan_start(vm(None, running=False), None, {})
        assert plan.vm is not None and plan.vm["spec"]["running"] is True
        assert "runStrategy" not in plan.vm["spec"]

    def test_manual_keeps_manual_with_start_request(self) -> None:
        plan = ks.plan_start(vm("Manual"), None, {})
        assert plan.vm is not None
        assert plan.vm["spec"]["runStrategy"] == "Manual"
        assert plan.vm["status"]["stateChangeRequests"] == [{"action": "Start"}]

    def test_manual_with_final_vmi_restarts_it(self) -> None:
        plan = ks.plan_start(vm("Manual"), vmi("Succeeded"), {})
        assert plan.vm is not None
        assert plan.vm["status"]["stateChangeRequests"] == [
            {"action": "Stop", "uid": "vmi-1"},
            {"action": "Start"},
        ]

    def test_already_running_is_409(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_start(vm("Halted"), vmi("Running", deleting=True), {})
        assert e.value.code == 409
        assert (
            e.value.message
            == 'Operation cannot be fulfilled on virtualmachine.kubevirt.io "vm1": VM is already running'
        )
        assert e.value.details == {"name": "vm1", "group": "kubevirt.io", "kind": "virtualmachine"}

    def test_always_refuses_manual_start(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_start(vm("Always"), None, {})
        assert e.value.code == 409
        assert e.value.message.endswith("Always does not support manual start requests")

    def test_rerun_on_failure_from_failed_is_409(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_start(vm("RerunOnFailure"), vmi("Failed"), {})
        assert "does not support starting VM from failed state" in e.value.message

    def test_paused_start_on_halted_records_request(self) -> None:
        plan = ks.plan_start(vm("Halted"), None, {"paused": True})
        assert plan.vm is not None
        assert plan.vm["spec"]["runStrategy"] == "Halted"
        assert plan.vm["status"]["stateChangeRequests"] == [{"action": "Start", "data": {"paused": "true"}}]

    def test_busy_when_request_pending(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_start(vm("Manual", status={"stateChangeRequests": [{"action": "Start"}]}), None, {})
        assert e.value.code == 500
        assert "stop/start already underway" in e.value.message

    def test_dry_run_changes_nothing(self) -> None:
        assert ks.plan_start(vm("Halted"), None, {"dryRun": ["All"]}).vm is None


class TestStop:
    def test_always_becomes_halted(self) -> None:
        plan = ks.plan_stop(vm("Always"), vmi(), {})
        assert plan.vm is not None and plan.vm["spec"]["runStrategy"] == "Halted"
        assert plan.vmi_grace is None

    def test_grace_period_patches_vmi(self) -> None:
        assert ks.plan_stop(vm("Always"), vmi(), {"gracePeriod": 0}).vmi_grace == 0

    def test_halted_stopped_is_409_not_running(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_stop(vm("Halted"), None, {})
        assert e.value.code == 409
        assert e.value.message.endswith("VM is not running")

    def test_halted_while_stopping_needs_shorter_grace(self) -> None:
        with pytest.raises(ks.RefusalAfterPatch) as e:
            ks.plan_stop(vm("Halted"), vmi(deleting=True), {})
        assert "Halted only supports manual stop requests with a shorter graceperiod" in e.value.message
        plan = ks.plan_stop(vm("Halted"), vmi(deleting=True), {"gracePeriod": 0})
        assert plan.vmi_grace == 0
        assert plan.vm is not None
        assert plan.vm["status"]["stateChangeRequests"] == [{"action": "Stop", "uid": "vmi-1"}]

    def test_manual_stop_request_replaces_pending(self) -> None:
        status = {"stateChangeRequests": [{"action": "Start"}]}
        plan = ks.plan_stop(vm("Manual", status=status), vmi(), {})
        assert plan.vm is not None
        assert plan.vm["status"]["stateChangeRequests"] == [{"action": "Stop", "uid": "vmi-1"}]


class TestRestart:
    def test_positive_grace_is_400(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_restart(None, None, {"gracePeriodSeconds": 5}, "vm1")
        assert (e.value.code, e.value.reason) == (400, "BadRequest")
        assert e.value.message == "For force restart, only gracePeriod=0 is supported for now"

    def test_missing_vm_is_404(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_restart(None, None, {}, "vm1")
        assert e.value.code == 404
        assert e.value.message == 'virtualmachine.kubevirt.io "vm1" not found'

    def test_halted_is_409(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_restart(vm("Halted"), None, {}, "vm1")
        assert e.value.message.endswith("RunStategy Halted does not support manual restart requests")

    def test_no_vmi_is_409(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.plan_restart(vm("Always"), None, {}, "vm1")
        assert e.value.message.endswith("VM is not running: Halted")

    def test_force_restart_requests_stop_and_start(self) -> None:
        plan = ks.plan_restart(vm("Always"), vmi(), {"gracePeriodSeconds": 0}, "vm1")
        assert plan.vmi_grace == 1
        assert plan.vm is not None
        assert plan.vm["status"]["stateChangeRequests"] == [
            {"action": "Stop", "uid": "vmi-1"},
            {"action": "Start"},
        ]


class TestPause:
    def test_not_running(self) -> None:
        with pytest.raises(ks.Refusal) as e:
            ks.check_pause(vmi("Scheduling"))
        assert e.value.code == 409
        assert e.value.message == (
            'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vm1": VM is not running'
        )

    def test_already_paused(self) -> None:
        with pytest.raises(ks.Refusal, match="VMI is already paused"):
            ks.check_pause(vmi(paused=True))

    def test_unpause_needs_paused(self) -> None:
        with pytest.raises(ks.Refusal, match="VMI is not paused"):
            ks.check_unpause(vmi())
        ks.check_unpause(vmi(paused=True))

    def test_set_paused_toggles_condition(self) -> None:
        obj = vmi()
        ks.set_paused(obj, True, NOW)
        assert ks.has_condition_true(obj, "Paused")
        ks.set_paused(obj, False, NOW)
        assert ks.condition(obj, "Paused") is None


class TestSync:
    def test_always_without_vmi_creates(self) -> None:
        assert ks.sync_run_strategy(vm("Always"), None).create_vmi

    def test_always_restarts_after_guest_shutdown(self) -> None:
        assert ks.sync_run_strategy(vm("Always"), vmi("Succeeded")).delete_vmi

    def test_always_with_stop_request_deletes(self) -> None:
        status = {"stateChangeRequests": [{"action": "Stop", "uid": "vmi-1"}, {"action": "Start"}]}
        assert ks.sync_run_strategy(vm("Always", status=status), vmi()).delete_vmi

    def test_waits_for_terminating_vmi(self) -> None:
        act = ks.sync_run_strategy(vm("Always"), vmi("Succeeded", deleting=True))
        assert not act.delete_vmi and not act.create_vmi

    def test_halted_deletes_vmi(self) -> None:
        assert ks.sync_run_strategy(vm("Halted"), vmi()).delete_vmi

    def test_halted_paused_start_sets_running(self) -> None:
        status = {"stateChangeRequests": [{"action": "Start", "data": {"paused": "true"}}]}
        assert ks.sync_run_strategy(vm("Halted", status=status), None).set_running

    def test_manual_keeps_final_vmi(self) -> None:
        act = ks.sync_run_strategy(vm("Manual"), vmi("Succeeded"))
        assert not act.delete_vmi and not act.create_vmi

    def test_manual_start_request_creates(self) -> None:
        status = {"stateChangeRequests": [{"action": "Start"}]}
        assert ks.sync_run_strategy(vm("Manual", status=status), None).create_vmi

    def test_rerun_on_failure_restarts_failed(self) -> None:
        act = ks.sync_run_strategy(
            vm("RerunOnFailure", status={"runStrategy": "RerunOnFailure"}), vmi("Failed")
        )
        assert act.delete_vmi and act.add_start_request

    def test_rerun_on_failure_stays_down_after_shutdown(self) -> None:
        v = vm("RerunOnFailure", status={"runStrategy": "RerunOnFailure"})
        act = ks.sync_run_strategy(v, vmi("Succeeded"))
        assert act.delete_vmi and not act.add_start_request
        assert not ks.sync_run_strategy(v, None).create_vmi


class TestNewVmi:
    def test_copies_template_and_owner(self) -> None:
        out = ks.new_vmi(vm("Always"), NOW)
        assert out["metadata"]["labels"] == {"kubevirt.io/vm": "vm1"}
        assert out["metadata"]["ownerReferences"][0]["uid"] == "vm-uid"
        assert out["metadata"]["ownerReferences"][0]["controller"] is True
        assert out["metadata"]["annotations"]["kubevirt.io/vm-generation"] == "3"
        assert out["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] == 1
        assert out["spec"]["terminationGracePeriodSeconds"] == 180
        assert out["status"]["phaseTransitionTimestamps"] == [
            {"phase": "Pending", "phaseTransitionTimestamp": NOW}
        ]

    def test_default_interface_gets_stable_mac(self) -> None:
        a = ks.new_vmi(vm("Always"), NOW)
        b = ks.new_vmi(vm("Always"), NOW)
        mac = a["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"]
        assert mac == b["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"]
        assert mac.startswith("02:")

    def test_template_mac_kept(self) -> None:
        v = vm("Always")
        v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"] = [
            {"name": "nic0", "bridge": {}, "macAddress": "52:54:00:12:34:56"}
        ]
        v["spec"]["template"]["spec"]["networks"] = [{"name": "nic0", "pod": {}}]
        out = ks.new_vmi(v, NOW)
        ks.advance_phase(out, "Running", NOW, node="node01", ip="10.244.0.9")
        assert out["status"]["interfaces"][0]["mac"] == "52:54:00:12:34:56"
        assert out["status"]["interfaces"][0]["ipAddress"] == "10.244.0.9"


class TestVmStatus:
    def test_stopped(self) -> None:
        st = ks.vm_status(vm("Halted"), None, NOW)
        assert st["printableStatus"] == "Stopped"
        assert st["ready"] is False and st["created"] is False
        assert ks.condition({"status": st}, "Ready")["reason"] == "VMINotExists"

    def test_starting_then_running(self) -> None:
        v = vm("Always")
        assert ks.vm_status(v, vmi("Scheduling"), NOW)["printableStatus"] == "Starting"
        st = ks.vm_status(v, vmi("Running"), NOW)
        assert st["printableStatus"] == "Running"
        assert st["ready"] is True and st["created"] is True
        assert ks.condition({"status": st}, "Ready")["status"] == "True"
        assert st["runStrategy"] == "Always"

    def test_stopping_and_paused(self) -> None:
        assert ks.vm_status(vm("Halted"), vmi(deleting=True), NOW)["printableStatus"] == "Stopping"
        st = ks.vm_status(vm("Always"), vmi(paused=True), NOW)
        assert st["printableStatus"] == "Paused"
        assert ks.condition({"status": st}, "Paused")["status"] == "True"

    def test_trims_satisfied_requests(self) -> None:
        v = vm(
            "Always",
            status={"stateChangeRequests": [{"action": "Stop", "uid": "vmi-1"}, {"action": "Start"}]},
        )
        st = ks.vm_status(v, None, NOW)
        assert st["stateChangeRequests"] == [{"action": "Start"}]
        v["status"] = st
        assert "stateChangeRequests" not in ks.vm_status(v, vmi(uid="vmi-2"), NOW)

    def test_restart_required_when_template_changes(self) -> None:
        v = vm("Always")
        started = dict(v["spec"]["template"]["spec"])
        assert (
            ks.condition(
                {"status": ks.vm_status(v, vmi(), NOW, started_template_spec=started)}, "RestartRequired"
            )
            is None
        )
        v["spec"]["template"]["spec"] = {"domain": {"devices": {"disks": [{"name": "root", "disk": {}}]}}}
        st = ks.vm_status(v, vmi(), NOW, started_template_spec=started)
        cond = ks.condition({"status": st}, "RestartRequired")
        assert cond is not None and cond["status"] == "True"
        v["status"] = st
        v["spec"]["template"]["spec"] = started
        assert (
            ks.condition(
                {"status": ks.vm_status(v, vmi(), NOW, started_template_spec=started)}, "RestartRequired"
            )
            is None
        )

    def test_ready_condition_transition_time_is_stable(self) -> None:
        v = vm("Halted")
        v["status"] = ks.vm_status(v, None, NOW)
        again = ks.vm_status(v, None, "2026-01-01T00:05:00Z")
        assert again == v["status"]


def test_webhook_validation() -> None:
    assert ks.validate_vm(vm("Always")) == []
    assert ks.validate_vm(vm(None, running=True)) == []
    causes = ks.validate_vm(vm("Always", running=True))
    assert [c["field"] for c in causes] == ["spec.running"]
    bad = ks.validate_vm(vm("Sometimes"))
    assert bad[0]["message"] == "Invalid RunStrategy (Sometimes)"
    refusal = ks.webhook_denial(bad)
    assert refusal.code == 422
    assert refusal.message.startswith(
        'admission webhook "virtualmachine-validator.kubevirt.io" denied the request: '
    )


def test_webhook_firmware_validation() -> None:
    """validateDomainSpec: Secure Boot (on, or unset: KubeVirt's default) needs SMM; EFI and BIOS exclude
    each other."""
    field = "spec.template.spec.domain"
    message = f"{field} has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled."

    def causes(domain: dict) -> list[str]:
        return [c["message"] for c in ks.validate_domain(domain, field)]

    assert causes({}) == []
    assert causes({"firmware": {"bootloader": {"bios": {}}}}) == []
    assert causes({"firmware": {"bootloader": {"efi": {"secureBoot": False}}}}) == []
    assert causes({"firmware": {"bootloader": {"efi": {}}}}) == [message]
    assert causes({"firmware": {"bootloader": {"efi": {"secureBoot": True}}},
                   "features": {"smm": {"enabled": False}}}) == [message]
    assert causes({"firmware": {"bootloader": {"efi": {}}}, "features": {"smm": {}}}) == []
    assert causes({"firmware": {"bootloader": {"efi": {"secureBoot": True}}},
                   "features": {"smm": {"enabled": True}}}) == []
    both = causes({"firmware": {"bootloader": {"efi": {"secureBoot": False}, "bios": {}}}})
    exclusive = "has both EFI and BIOS configured, but they are mutually exclusive."
    assert both == [f"{field}.firmware.bootloader {exclusive}"]
    v = vm("Always")
    v["spec"]["template"]["spec"]["domain"]["firmware"] = {"bootloader": {"efi": {}}}
    refusal = ks.webhook_denial(ks.validate_vm(v))
    assert refusal.code == 422 and refusal.message.endswith(message)
