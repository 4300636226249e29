"""The secret scanner the log tests rely on finds what is planted in it: a password as given, in a Basic
Authorization header, a token in any file of a tree, and a password in the demo's log lines but not in
its printed guide."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.log_secrets import file_leaks, kubeconfig_tokens_under, leaks, outside_guide

PASSWORD, TOKEN = "Pl4ntedPassw0rd1", "planted.token.abcdef123456"


def test_leaks_finds_every_form_and_only_what_is_there() -> None:
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert leaks(f"password={PASSWORD}", [PASSWORD]) == ["Pl4…"]
    assert leaks(f"Authorization: Basic {basic}", [PASSWORD], "admin") == ["Pl4…"]
    assert leaks(base64.b64encode(TOKEN.encode()).decode(), [TOKEN]) == ["pla…"]
    assert leaks("login failed user=admin", [PASSWORD, TOKEN], "admin") == []


def test_file_leaks_and_tokens_under_a_pod_tree(tmp_path: Path) -> None:
    pod = tmp_path / "pods" / "ns-bmc-kbmc-1"
    pod.mkdir(parents=True)
    config = {"users": [{"name": "sa", "user": {"token": TOKEN}}], "current-context": "x"}
    (pod / "kubeconfig").write_text(yaml.safe_dump(config))
    assert kubeconfig_tokens_under(tmp_path) == [TOKEN]
    clean, leaky, other = pod / "kbmc.log", tmp_path / "pods" / "controller.log", pod / "other.log"
    clean.write_text('{"message": "ipmi request", "user": "admin"}\n')
    leaky.write_text(f"connecting with Bearer {TOKEN}\n")
    other.write_text(f"user admin password {PASSWORD}\n")
    found = file_leaks([clean, leaky, other], [PASSWORD, *kubeconfig_tokens_under(tmp_path)], "admin")
    assert found == {str(leaky): ["pla…"], str(other): ["Pl4…"]}


def test_demo_output_is_scanned_outside_its_guide() -> None:
    guide = f"\nvmbmc demo is ready.\n\n  VM default/vm-1  user admin  password {PASSWORD}\n"
    guide += "Press Ctrl-C to stop."
    assert leaks(outside_guide(guide + "\nstopping…\n"), [PASSWORD]) == []
    assert leaks(outside_guide(f"WARNING logging in with {PASSWORD}\n" + guide), [PASSWORD]) == ["Pl4…"]
    assert leaks(outside_guide(guide + f"\nWARNING {PASSWORD}\n"), [PASSWORD]) == ["Pl4…"]
