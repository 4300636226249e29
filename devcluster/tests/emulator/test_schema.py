"""Structural schema behaviour (prune, default, validate, CEL) with kube-apiserver's wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vmbmc_devcluster.emulator import schema as S

# A cut-down VirtualMachineBMC schema with its two CEL rules (exactly one VM reference style,
# exactly one credentials style).
BMC_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.virtualMachineRef) != (has(self.vmNamespace) || has(self.vmName))",
                    "message": "exactly one of virtualMachineRef or vmNamespace/vmName must be set",
                },
                {
                    "rule": "!(has(self.authSecretRef) && (has(self.username) || has(self.password)))",
                    "message": "authSecretRef and inline username/password are mutually exclusive",
                },
            ],
            "properties": {
                "virtualMachineRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}},
                },
                "vmNamespace": {"type": "string"},
                "vmName": {"type": "string"},
                "authSecretRef": {"type": "object", "properties": {"name": {"type": "string"}}},
                "username": {"type": "string"},
                "password": {"type": "string"},
                "ipmi": {
                    "type": "object",
                    "default": {},
                    "properties": {"enabled": {"type": "boolean", "default": True}},
                },
                "redfish": {
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "boolean", "default": False},
                        "insecureHTTP": {"type": "boolean", "default": False},
                    },
                },
                "service": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": ["ClusterIP", "NodePort", "LoadBalancer"],
                            "default": "ClusterIP",
                        }
                    },
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "powerState": {
                    "type": "string",
                    "enum": ["On", "Off", "PoweringOn", "PoweringOff", "Paused", "Unknown"],
                },
                "observedGeneration": {"type": "integer", "format": "int64"},
                "conditions": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {
                        "type": "object",
                        "required": ["type", "status"],
                        "properties": {
                            "type": {"type": "string"},
                            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                            "lastTransitionTime": {"type": "string", "format": "date-time"},
                        },
                    },
                },
                "bootOverride": {
                    "type": "object",
                    "properties": {
                        "savedFirmware": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                },
            },
        },
    },
}


def bmc(spec: dict | None = None, status: dict | None = None, **meta: object) -> dict:
    obj: dict = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": "b", "namespace": "ns", **meta},
        "spec": spec if spec is not None else {"virtualMachineRef": {"name": "vm"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def texts(causes: list[S.Cause]) -> list[str]:
    return [S.cause_text(c) for c in causes]


# ------------------------------------------------------------------ prune


def test_prune_drops_unknown_fields_and_keeps_root_metadata() -> None:
    obj = bmc(status={"ready": True, "kopf": {"progress": {}}, "powerState": "On"})
    obj["spec"]["bogus"] = 1
    obj["extra"] = "x"
    obj["metadata"]["notAMetaField"] = 1
    obj["metadata"]["labels"] = {"a": "b"}
    out = S.prune(obj, BMC_SCHEMA)
    assert out["apiVersion"] == "virtualmachine.kubevirt.io/v1" and out["kind"] == "VirtualMachineBMC"
    assert out["metadata"] == {"name": "b", "namespace": "ns", "labels": {"a": "b"}}
    assert "extra" not in out and "bogus" not in out["spec"]
    assert out["status"] == {"ready": True, "powerState": "On"}
    assert "kopf" in obj["status"], "prune must not modify its input"


def test_prune_preserve_unknown_fields_keeps_everything_below() -> None:
    obj = bmc(
        status={"bootOverride": {"savedFirmware": {"bootloader": {"efi": {"secureBoot": False}}}, "x": 1}}
    )
    out = S.prune(obj, BMC_SCHEMA)
    assert out["status"]["bootOverride"] == {"savedFirmware": {"bootloader": {"efi": {"secureBoot": False}}}}


def test_prune_preserve_unknown_still_prunes_known_properties() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    out = S.prune({"free": {"z": 1}, "known": {"a": "x", "b": "y"}}, schema, root=False)
    assert out == {"free": {"z": 1}, "known": {"a": "x"}}


def test_prune_additional_properties_and_items() -> None:
    schema = {
        "type": "object",
        "properties": {
            "m": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"k": {"type": "string"}}},
            },
            "l": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}},
            "empty": {"type": "object"},
        },
    }
    obj = {"m": {"a": {"k": "1", "x": 2}}, "l": [{"n": "a", "junk": 1}], "empty": {"x": 1}}
    assert S.prune(obj, schema, root=False) == {"m": {"a": {"k": "1"}}, "l": [{"n": "a"}], "empty": {}}


def test_prune_embedded_resource_keeps_type_and_meta() -> None:
    schema = {
        "type": "object",
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
            }
        },
    }
    obj = {
        "template": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x", "bad": 1},
            "spec": {"a": "1", "b": 2},
        }
    }
    out = S.prune(obj, schema, root=False)
    assert out == {
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"a": "1"}}
    }


def test_prune_int_or_string_keeps_scalar() -> None:
    schema = {"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True}}}
    assert S.prune({"port": "http"}, schema, root=False) == {"port": "http"}
    assert S.prune({"port": 80}, schema, root=False) == {"port": 80}


def test_prune_without_schema_is_a_copy() -> None:
    obj = {"a": {"b": 1}}
    out = S.prune(obj, None)
    assert out == obj and out is not obj


# ------------------------------------------------------------------ defaults


def test_defaults_apply_nested_when_parent_exists() -> None:
    obj = bmc(spec={"virtualMachineRef": {"name": "vm"}, "redfish": {}})
    S.apply_defaults(obj, BMC_SCHEMA)
    spec = obj["spec"]
    # ipmi has `default: {}` so it is created and then its own defaults apply inside it.
    assert spec["ipmi"] == {"enabled": True}
    assert spec["service"] == {"type": "ClusterIP"}
    assert spec["redfish"] == {"enabled": False, "insecureHTTP": False}


def test_defaults_do_not_create_parents_without_default() -> None:
    obj = bmc(spec={"virtualMachineRef": {"name": "vm"}})
    S.apply_defaults(obj, BMC_SCHEMA)
    assert "redfish" not in obj["spec"]
    assert "status" not in obj


def test_defaults_keep_explicit_values_and_replace_nonnullable_null() -> None:
    obj = bmc(
        spec={"virtualMachineRef": {"name": "vm"}, "ipmi": {"enabled": False}, "service": {"type": None}}
    )
    S.apply_defaults(obj, BMC_SCHEMA)
    assert obj["spec"]["ipmi"] == {"enabled": False}
    assert obj["spec"]["service"] == {"type": "ClusterIP"}


def test_null_without_default_is_dropped_nullable_is_kept() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string", "nullable": True}},
    }
    obj = {"a": None, "b": None}
    S.apply_defaults(obj, schema)
    assert obj == {"b": None}


def test_defaults_in_list_items_and_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "l": {
                "type": "array",
                "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 5}}},
            },
            "m": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "default": "d"}},
                },
            },
        },
    }
    obj = {"l": [{}, {"p": 1}], "m": {"x": {}}}
    S.apply_defaults(obj, schema)
    assert obj == {"l": [{"p": 5}, {"p": 1}], "m": {"x": {"q": "d"}}}


def test_default_values_are_copied() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "default": {"x": []}}}}
    one, two = {}, {}
    S.apply_defaults(one, schema)
    S.apply_defaults(two, schema)
    one["a"]["x"].append(1)
    assert two["a"]["x"] == [] and schema["properties"]["a"]["default"] == {"x": []}


# ------------------------------------------------------------------ validation wording


def test_valid_object_has_no_causes() -> None:
    obj, causes = S.apply_schema(bmc(), BMC_SCHEMA)
    assert causes == []
    assert obj["spec"]["service"]["type"] == "ClusterIP"


def test_required_wording() -> None:
    causes = S.validate(bmc(spec={"virtualMachineRef": {"namespace": "x"}}), BMC_SCHEMA)
    assert causes[0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.virtualMachineRef.name",
    }


def test_enum_wording() -> None:
    causes = S.validate(bmc(status={"powerState": "Sleeping"}), BMC_SCHEMA)
    assert causes[0] == {
        "reason": "FieldValueNotSupported",
        "message": 'Unsupported value: "Sleeping": supported values: "On", "Off", "PoweringOn", '
        '"PoweringOff", '
        '"Paused", "Unknown"',
        "field": "status.powerState",
    }


def test_enum_with_non_string_values() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}
    assert texts(S.validate({"n": 3}, schema)) == ['n: Unsupported value: 3: supported values: "1", "2"']


def test_type_wording() -> None:
    causes = S.validate(bmc(status={"ready": "yes"}), BMC_SCHEMA)
    assert causes[0] == {
        "reason": "FieldValueTypeInvalid",
        "message": 'Invalid value: "string": status.ready in body must be of type boolean: "string"',
        "field": "status.ready",
    }


@pytest.mark.parametrize(
    ("schema_type", "value", "got"),
    [
        ("string", 1, "integer"),
        ("integer", 1.5, "number"),
        ("integer", "1", "string"),
        ("number", True, "boolean"),
        ("object", [], "array"),
        ("array", {}, "object"),
        ("boolean", None, "null"),
    ],
)
def test_type_mismatches(schema_type: str, value: object, got: str) -> None:
    schema = {"type": "object", "properties": {"f": {"type": schema_type}}}
    assert texts(S.validate({"f": value}, schema)) == [
        f'f: Invalid value: "{got}": f in body must be of type {schema_type}: "{got}"'
    ]


@pytest.mark.parametrize(
    ("schema_type", "value"),
    [("integer", 3), ("integer", 3.0), ("number", 3), ("number", 2.5), ("string", ""), ("boolean", False)],
)
def test_type_matches(schema_type: str, value: object) -> None:
    assert S.validate({"f": value}, {"type": "object", "properties": {"f": {"type": schema_type}}}) == []


def test_nullable_accepts_null() -> None:
    schema = {"type": "object", "properties": {"f": {"type": "string", "nullable": True}}}
    assert S.validate({"f": None}, schema) == []


def test_int_or_string() -> None:
    schema = {"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": True}}}
    assert S.validate({"p": 80}, schema) == [] and S.validate({"p": "http"}, schema) == []
    assert texts(S.validate({"p": True}, schema)) == [
        'p: Invalid value: "boolean": p in body must be of type integer,string: "boolean"'
    ]


def test_string_constraints() -> None:
    schema = {
        "type": "object",
        "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"}},
    }
    assert texts(S.validate({"s": "ABCD"}, schema)) == [
        "s: Too long: may not be more than 3 bytes",
        "s: Invalid value: \"ABCD\": s in body should match '^[a-z]+$'",
    ]
    assert texts(S.validate({"s": "a"}, schema)) == [
        's: Invalid value: "a": s in body should be at least 2 chars long'
    ]
    assert S.validate({"s": "ab"}, schema) == []


def test_number_constraints() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "minimum": 1, "maximum": 10},
            "b": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1.5,
                "exclusiveMaximum": True,
            },
            "c": {"type": "integer", "multipleOf": 5},
        },
    }
    assert texts(S.validate({"a": 0, "b": 0, "c": 7}, schema)) == [
        "a: Invalid value: 0: a in body should be greater than or equal to 1",
        "b: Invalid value: 0: b in body should be greater than 0",
        "c: Invalid value: 7: c in body should be a multiple of 5",
    ]
    assert texts(S.validate({"a": 11, "b": 1.5}, schema)) == [
        "a: Invalid value: 11: a in body should be less than or equal to 10",
        "b: Invalid value: 1.5: b in body should be less than 1.5",
    ]
    assert S.validate({"a": 10, "b": 0.5, "c": 10}, schema) == []


def test_formats() -> None:
    schema = {
        "type": "object",
        "properties": {
            "t": {"type": "string", "format": "date-time"},
            "i": {"type": "integer", "format": "int32"},
        },
    }
    assert S.validate({"t": "2024-01-02T03:04:05Z", "i": 5}, schema) == []
    assert S.validate({"t": "2024-01-02T03:04:05.123+02:00"}, schema) == []
    causes = S.validate({"t": "yesterday", "i": 2**40}, schema)
    assert causes[0]["reason"] == "FieldValueTypeInvalid"
    assert (
        S.cause_text(causes[0])
        == 't: Invalid value: "yesterday": t in body must be of type date-time: "yesterday"'
    )
    assert causes[1]["field"] == "i"


def test_array_constraints_and_item_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "l": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {"type": "object", "required": ["n"], "properties": {"n": {"type": "string"}}},
            }
        },
    }
    assert texts(S.validate({"l": []}, schema)) == [
        "l: Invalid value: 0: l in body should have at least 1 items"
    ]
    assert texts(S.validate({"l": [{"n": "a"}, {"n": "b"}, {}]}, schema)) == [
        "l: Too many: 3: must have at most 2 items",
        "l[2].n: Required value",
    ]
    assert texts(S.validate({"l": [{"n": 1}]}, schema)) == [
        'l[0].n: Invalid value: "integer": l[0].n in body must be of type string: "integer"'
    ]


def test_object_property_count_and_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "m": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 2,
                "additionalProperties": {"type": "integer"},
            }
        },
    }
    assert texts(S.validate({"m": {}}, schema)) == [
        "m: Invalid value: 0: m in body should have at least 1 properties"
    ]
    assert texts(S.validate({"m": {"a": 1, "b": 2, "c": 3}}, schema)) == [
        "m: Too many: 3: must have at most 2 items"
    ]
    assert texts(S.validate({"m": {"a": "x"}}, schema)) == [
        'm.a: Invalid value: "string": m.a in body must be of type integer: "string"'
    ]


def test_list_type_map_duplicates() -> None:
    status = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]}
    causes = S.validate(bmc(status=status), BMC_SCHEMA)
    assert causes == [
        {
            "reason": "FieldValueDuplicate",
            "message": 'Duplicate value: map[string]interface {}{"type":"Ready"}',
            "field": "status.conditions[1]",
        }
    ]


def test_list_type_set_duplicates() -> None:
    schema = {
        "type": "object",
        "properties": {"s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}},
    }
    assert texts(S.validate({"s": ["a", "b", "a"]}, schema)) == ['s[2]: Duplicate value: "a"']
    assert S.validate({"s": ["a", "b"]}, schema) == []


def test_junctors() -> None:
    schema = {
        "type": "object",
        "properties": {
            "o": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            },
            "n": {"type": "string", "not": {"enum": ["forbidden"]}},
            "any": {"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]},
        },
    }
    assert S.validate({"o": {"a": "1"}, "n": "ok", "any": 11}, schema) == []
    causes = S.validate({"o": {"a": "1", "b": "2"}, "n": "forbidden", "any": 5}, schema)
    msgs = texts(causes)
    assert (
        'o: Invalid value: "": "o" must validate one and only one schema (oneOf). Found 2 valid alternatives'
        in msgs
    )
    assert 'n: Invalid value: "": "n" must not validate the schema (not)' in msgs
    assert 'any: Invalid value: "": "any" must validate at least one schema (anyOf)' in msgs


def test_invalid_message_formats() -> None:
    one = [S._cause("FieldValueRequired", "spec.foo")]
    assert S.invalid_message("VirtualMachineBMC.virtualmachine.kubevirt.io", "x", one) == (
        'VirtualMachineBMC.virtualmachine.kubevirt.io "x" is invalid: spec.foo: Required value'
    )
    two = [*one, S._cause("FieldValueInvalid", "spec.bar", 3, "bad")]
    assert (
        S.invalid_message("Pod", "p", two)
        == 'Pod "p" is invalid: [spec.foo: Required value, spec.bar: Invalid value: 3: bad]'
    )
    assert S.invalid_message("Pod", "p", one + one) == 'Pod "p" is invalid: spec.foo: Required value'
    assert S.invalid_message("Pod", "p", []) == 'Pod "p" is invalid'


# ------------------------------------------------------------------ CEL


def test_cel_vm_reference_style_exactly_one() -> None:
    ok = [
        {"virtualMachineRef": {"name": "vm"}},
        {"vmNamespace": "ns", "vmName": "vm"},
        {"vmName": "vm"},
    ]
    for spec in ok:
        assert S.validate(bmc(spec=spec), BMC_SCHEMA) == [], spec
    for spec in ({}, {"virtualMachineRef": {"name": "vm"}, "vmName": "vm"}):
        causes = S.validate(bmc(spec=spec), BMC_SCHEMA)
        assert causes == [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: exactly one of virtualMachineRef or vmNamespace/vmName "
                "must be set",
                "field": "spec",
            }
        ]


def test_cel_credentials_given_once() -> None:
    assert S.validate(bmc(spec={"vmName": "v", "authSecretRef": {"name": "s"}}), BMC_SCHEMA) == []
    assert S.validate(bmc(spec={"vmName": "v", "username": "u", "password": "p"}), BMC_SCHEMA) == []
    causes = S.validate(
        bmc(spec={"vmName": "v", "authSecretRef": {"name": "s"}, "password": "p"}), BMC_SCHEMA
    )
    assert texts(causes) == [
        "spec: Invalid value: authSecretRef and inline username/password are mutually exclusive"
    ]


def test_cel_full_422_message() -> None:
    causes = S.validate(bmc(spec={}), BMC_SCHEMA)
    assert S.invalid_message("VirtualMachineBMC.virtualmachine.kubevirt.io", "b", causes) == (
        'VirtualMachineBMC.virtualmachine.kubevirt.io "b" is invalid: '
        "spec: Invalid value: exactly one of virtualMachineRef or vmNamespace/vmName must be set"
    )


def _cel(rules: list[dict], prop: dict | None = None) -> dict:
    return {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": rules,
                "properties": prop
                or {
                    "a": {"type": "integer"},
                    "s": {"type": "string"},
                    "l": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }


def test_cel_default_message_is_failed_rule() -> None:
    causes = S.validate({"spec": {"a": 1}}, _cel([{"rule": "self.a > 5"}]))
    assert texts(causes) == ["spec: Invalid value: failed rule: self.a > 5"]


def test_cel_on_scalar_shows_value() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('vm-')"}]}
        },
    }
    assert texts(S.validate({"name": "x"}, schema)) == [
        "name: Invalid value: \"x\": failed rule: self.startsWith('vm-')"
    ]
    assert S.validate({"name": "vm-x"}, schema) == []


def test_cel_message_expression_reason_and_field_path() -> None:
    rules = [
        {
            "rule": "size(self.l) <= 2",
            "messageExpression": "'too many: ' + string(size(self.l))",
            "reason": "FieldValueForbidden",
            "fieldPath": ".l",
        }
    ]
    causes = S.validate({"spec": {"l": ["a", "b", "c"]}}, _cel(rules))
    assert causes == [
        {"reason": "FieldValueForbidden", "message": "Forbidden: too many: 3", "field": "spec.l"}
    ]


def test_cel_reason_required_and_duplicate() -> None:
    causes = S.validate(
        {"spec": {}}, _cel([{"rule": "has(self.s)", "message": "s please", "reason": "FieldValueRequired"}])
    )
    assert texts(causes) == ["spec: Required value: s please"]
    causes = S.validate(
        {"spec": {"l": ["a", "a"]}},
        _cel([{"rule": "false", "reason": "FieldValueDuplicate", "fieldPath": ".l"}]),
    )
    assert texts(causes) == ["spec.l: Duplicate value"]


def test_cel_bad_message_expression_falls_back_to_message() -> None:
    rules = [{"rule": "false", "message": "plain", "messageExpression": "self.nope"}]
    assert texts(S.validate({"spec": {}}, _cel(rules))) == ["spec: Invalid value: plain"]


def test_cel_runtime_error_wording() -> None:
    causes = S.validate({"spec": {}}, _cel([{"rule": "self.a > 1"}]))
    assert texts(causes) == ['spec: Invalid value: "object": no such key: a evaluating rule: self.a > 1']


@pytest.mark.parametrize(
    ("rule", "spec", "ok"),
    [
        ("size(self.l) == 2 && self.l.all(x, x != '')", {"l": ["a", "b"]}, True),
        ("self.l.exists(x, x == 'b')", {"l": ["a"]}, False),
        ("self.l.exists_one(x, x == 'a')", {"l": ["a", "a"]}, False),
        ("self.s.matches('^[a-z]+$')", {"s": "abc"}, True),
        ("self.s.contains('b') && self.s.endsWith('c')", {"s": "abc"}, True),
        ("self.s.lowerAscii() == 'abc'", {"s": "ABC"}, True),
        ("self.s.split('-').size() == 3", {"s": "a-b-c"}, True),
        ("self.s.upperAscii().indexOf('B') == 1", {"s": "abc"}, True),
        ("!has(self.s) || self.s != ''", {}, True),
        ("self.a >= 0 && self.a < 10", {"a": 3}, True),
        ("int(self.s) > 2", {"s": "3"}, True),
        ("self.l.map(x, x + '!').join(',') == 'a!,b!'", {"l": ["a", "b"]}, True),
        ("self.l.filter(x, x.startsWith('a')).size() == 1", {"l": ["ab", "b"]}, True),
    ],
)
def test_cel_language_features(rule: str, spec: dict, ok: bool) -> None:
    assert (S.validate({"spec": spec}, _cel([{"rule": rule}])) == []) is ok


def test_cel_root_sees_metadata_name_only() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('b') && !has(self.metadata.uid)"}
        ],
        "properties": {},
    }
    assert S.validate({"metadata": {"name": "bmc", "uid": "1"}}, schema) == []
    assert len(S.validate({"metadata": {"name": "x"}}, schema)) == 1


def test_cel_transition_rule_skipped_on_create_and_checked_on_update() -> None:
    schema = _cel([{"rule": "self.s == oldSelf.s", "message": "s is immutable"}])
    assert S.validate({"spec": {"s": "a"}}, schema) == []
    assert S.validate({"spec": {"s": "a"}}, schema, old={"spec": {"s": "a"}}) == []
    assert texts(S.validate({"spec": {"s": "b"}}, schema, old={"spec": {"s": "a"}})) == [
        "spec: Invalid value: s is immutable"
    ]


def test_cel_transition_rule_in_list_map_items_correlates_by_key() -> None:
    schema = {
        "type": "object",
        "properties": {
            "l": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.v >= oldSelf.v", "message": "v may only grow"}
                    ],
                    "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                },
            }
        },
    }
    old = {"l": [{"name": "a", "v": 5}, {"name": "b", "v": 1}]}
    assert (
        S.validate(
            {"l": [{"name": "b", "v": 2}, {"name": "a", "v": 5}, {"name": "c", "v": 0}]}, schema, old=old
        )
        == []
    )
    assert texts(S.validate({"l": [{"name": "b", "v": 0}]}, schema, old=old)) == [
        "l[0]: Invalid value: v may only grow"
    ]


def test_cel_skipped_when_blocking_errors() -> None:
    causes = S.validate(bmc(spec={"virtualMachineRef": {}, "vmName": "x"}), BMC_SCHEMA)
    assert texts(causes) == [
        "spec.virtualMachineRef.name: Required value",
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was '
        "invalid; "
        "correct the existing errors to complete validation",
    ]


def test_cel_compiles_once_per_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 objects, two rules: two compilations (counted, not timed: the suite runs under load)."""
    S._cel_program.cache_clear()
    compiled: list[str] = []
    compile_once = S._CEL_ENV.compile

    def counting(expression: str) -> Any:
        compiled.append(expression)
        return compile_once(expression)

    monkeypatch.setattr(S._CEL_ENV, "compile", counting)
    for i in range(1000):
        obj = bmc(spec={"vmName": f"vm{i}", "authSecretRef": {"name": "s"}})
        _, causes = S.apply_schema(obj, BMC_SCHEMA)
        assert causes == []
    assert len(compiled) == len(set(compiled)) == 2
    info = S._cel_program.cache_info()
    assert info.misses == 2 and info.hits >= 1998


def test_validate_does_not_mutate() -> None:
    obj = bmc(spec={})
    before = copy.deepcopy(obj)
    S.validate(obj, BMC_SCHEMA)
    assert obj == before


# ------------------------------------------------------------------ CRD acceptance


def crd(schema: dict | None = None, **spec_over: object) -> dict:
    spec: dict = {
        "group": "virtualmachine.kubevirt.io",
        "names": {
            "plural": "virtualmachinebmcs",
            "singular": "virtualmachinebmc",
            "kind": "VirtualMachineBMC",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema or BMC_SCHEMA},
            }
        ],
    }
    spec.update(spec_over)
    return {"metadata": {"name": "virtualmachinebmcs.virtualmachine.kubevirt.io"}, "spec": spec}


def test_valid_crd() -> None:
    assert S.validate_crd(crd()) == []


def test_crd_missing_type_and_bad_names() -> None:
    bad = crd(
        {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}, scope="Global"
    )
    bad["metadata"]["name"] = "wrong"
    msgs = texts(S.validate_crd(bad))
    assert 'metadata.name: Invalid value: "wrong": must be spec.names.plural+"."+spec.group' in msgs
    assert 'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"' in msgs
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: "
        "must not be empty for specified object fields"
    ) in msgs


def test_crd_rejects_uncompilable_cel_and_bad_list_map() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}]},
            "l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
        },
    }
    causes = S.validate_crd(crd(schema))
    fields = [c["field"] for c in causes]
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule" in fields
    )
    assert "spec.versions[0].schema.openAPIV3Schema.properties[l].x-kubernetes-list-map-keys" in fields
    assert any("compilation failed" in c["message"] for c in causes)


def test_crd_needs_exactly_one_storage_version_and_a_schema() -> None:
    bad = crd()
    bad["spec"]["versions"].append({"name": "v2", "served": True, "storage": True})
    msgs = texts(S.validate_crd(bad))
    assert "spec.versions: Invalid value: must have exactly one version marked as storage version" in msgs
    assert "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required" in msgs


def test_cel_values_typed_by_format() -> None:
    schema = _cel(
        [{"rule": "self.t < timestamp('2030-01-01T00:00:00Z') && self.d >= duration('1m')"}],
        {"t": {"type": "string", "format": "date-time"}, "d": {"type": "string", "format": "duration"}},
    )
    assert S.validate({"spec": {"t": "2024-05-01T10:00:00Z", "d": "90s"}}, schema) == []
    assert len(S.validate({"spec": {"t": "2031-05-01T10:00:00Z", "d": "90s"}}, schema)) == 1


def test_cel_on_additional_properties_map_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "labels": {
                "type": "object",
                "additionalProperties": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "size(self) < 4"}],
                },
            }
        },
    }
    assert S.validate({"labels": {"a": "abc"}}, schema) == []
    assert texts(S.validate({"labels": {"a": "abcd"}}, schema)) == [
        'labels[a]: Invalid value: "abcd": failed rule: size(self) < 4'
    ]


def test_metadata_name_constraints_from_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}}
        },
    }
    assert S.validate({"metadata": {"name": "short", "uid": "x" * 50}}, schema) == []
    assert texts(S.validate({"metadata": {"name": "toolong"}}, schema)) == [
        "metadata.name: Too long: may not be more than 5 bytes"
    ]


def test_qualified_kind() -> None:
    assert S.qualified_kind("VirtualMachineBMC", "virtualmachine.kubevirt.io") == (
        "VirtualMachineBMC.virtualmachine.kubevirt.io"
    )
    assert S.qualified_kind("Pod", "") == "Pod"
