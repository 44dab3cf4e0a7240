"""kind-config.yaml: only fields kind v1alpha4 accepts, and host port 8000 reaches the
gateway Service the chart renders for the kind profile.

KIND_V1ALPHA4 below is written from kind's documented v1alpha4 API (the Cluster, Node,
Networking, Mount, PortMapping and PatchJSON6902 types of
sigs.k8s.io/kind/pkg/apis/config/v1alpha4), strict: kind rejects unknown fields, so
does this schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s import test_skaffold as skaffold
from vroom_cli.stack.settings import StackSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
KIND_CONFIG = REPO_ROOT / "kind-config.yaml"

_PORT = {"type": "integer", "minimum": -1, "maximum": 65535}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_PATCH_6902 = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "patch"],
    "properties": {
        "group": {"type": "string"},
        "version": {"type": "string"},
        "kind": {"type": "string"},
        "patch": {"type": "string"},
    },
}

#: kind.x-k8s.io/v1alpha4, as kind documents it.
KIND_V1ALPHA4: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/Node"}},
        "networking": {"$ref": "#/definitions/Networking"},
        "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": {"type": "object", "additionalProperties": {"type": "string"}},
        "kubeadmConfigPatches": _STRINGS,
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
        "containerdConfigPatches": _STRINGS,
        "containerdConfigPatchesJSON6902": _STRINGS,
    },
    "definitions": {
        "Node": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "role": {"enum": ["control-plane", "worker"]},
                "image": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extraMounts": {"type": "array", "items": {"$ref": "#/definitions/Mount"}},
                "extraPortMappings": {
                    "type": "array",
                    "items": {"$ref": "#/definitions/PortMapping"},
                },
                "gpus": {"type": "string"},
                "kubeadmConfigPatches": _STRINGS,
                "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
            },
        },
        "Networking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerPort": _PORT,
                "apiServerAddress": {"type": "string"},
                "podSubnet": {"type": "string"},
                "serviceSubnet": {"type": "string"},
                "disableDefaultCNI": {"type": "boolean"},
                "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
                "dnsSearch": _STRINGS,
            },
        },
        "Mount": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "containerPath": {"type": "string"},
                "hostPath": {"type": "string"},
                "readOnly": {"type": "boolean"},
                "selinuxRelabel": {"type": "boolean"},
                "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
            },
        },
        "PortMapping": {
            "type": "object",
            "additionalProperties": False,
            "required": ["containerPort"],
            "properties": {
                "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                "hostPort": _PORT,
                "listenAddress": {"type": "string"},
                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
            },
        },
    },
}

#: Kubernetes' default NodePort range (kind keeps it).
NODE_PORT_RANGE = range(30000, 32768)


def kind_config() -> dict[str, Any]:
    return yaml.safe_load(KIND_CONFIG.read_text())


def gateway_mapping() -> dict[str, Any]:
    """The port mapping that exposes the gateway: host port = the gateway's port."""
    port = StackSettings().gateway_port
    mappings = [
        m
        for node in kind_config()["nodes"]
        for m in node.get("extraPortMappings", [])
        if m.get("hostPort") == port
    ]
    assert len(mappings) == 1, f"expected one mapping of host port {port}"
    return mappings[0]


def test_kind_config_uses_only_fields_kind_accepts() -> None:
    validator = jsonschema.Draft7Validator(KIND_V1ALPHA4)
    errors = sorted(validator.iter_errors(kind_config()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodes", 0, "extraPortMapping"), []),  # misspelt field
        (("nodes", 0, "role"), "master"),  # removed role name
        (("nodes", 0, "extraPortMappings", 0, "protocol"), "tcp"),  # enum is upper case
        (("networking",), {"kubeProxyMode": "iptables", "podCIDR": "10.0.0.0/16"}),
    ],
)
def test_the_schema_rejects_what_kind_rejects(path: tuple[Any, ...], value: Any) -> None:
    config = kind_config()
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(jsonschema.Draft7Validator(KIND_V1ALPHA4).iter_errors(config))


def test_one_control_plane_node_pinned_by_digest() -> None:
    nodes = kind_config()["nodes"]
    assert [n.get("role", "control-plane") for n in nodes].count("control-plane") == 1
    for node in nodes:
        image = node.get("image")
        # kind supports a node image only with the release that built it: pin the digest.
        assert image
        assert image.startswith("kindest/node:v")
        assert "@sha256:" in image


def test_host_port_8000_maps_to_a_node_port_on_loopback() -> None:
    mapping = gateway_mapping()
    assert mapping["hostPort"] == 8000
    assert mapping["containerPort"] in NODE_PORT_RANGE
    assert mapping.get("protocol", "TCP") == "TCP"
    assert mapping.get("listenAddress") == "127.0.0.1", "do not expose the API on the network"


def test_cluster_name_is_the_kind_profiles_context() -> None:
    name = kind_config()["name"]
    kind = next(p for p in skaffold.load_config()["profiles"] if p["name"] == "kind")
    assert {"kubeContext": f"kind-{name}"} in kind["activation"]
    assert skaffold.with_profile("kind")["deploy"]["kubeContext"] == f"kind-{name}"


def test_the_kind_release_exposes_the_gateway_on_the_mapped_node_port() -> None:
    """Render the chart with the kind profile's values: the gateway Service is a NodePort
    on the mapped container port, targeting the gateway's port."""
    skaffold.require_chart()
    from tests.k8s.render import one  # noqa: PLC0415

    config = skaffold.with_profile("kind")
    docs = skaffold.render_with(config)
    name = f"{skaffold.release(config)['name']}-gateway"
    service = one(docs, "Service", name)
    assert service["spec"]["type"] == "NodePort"
    ports = service["spec"]["ports"]
    exposed = [p for p in ports if p.get("nodePort") == gateway_mapping()["containerPort"]]
    assert len(exposed) == 1, ports
    assert exposed[0]["port"] == StackSettings().gateway_port
