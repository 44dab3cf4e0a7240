"""The gateway's edge in the chart: exposure (Ingress with TLS, or a Gateway API
HTTPRoute validated against the v1.6.1 CRD), browser CORS, API keys mounted from a
Secret, OIDC, request limits, and the values combinations the templates refuse."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.k8s.render import (
    CI_DIR,
    GATEWAY_API_SCHEMAS,
    KUBE_VERSION,
    RELEASE,
    Manifest,
    container_env,
    crd_errors,
    load_values,
    of_kind,
    one,
    render,
    render_raw,
    strip_source,
)
from vroom_cli.stack.settings import StackSettings

INGRESS_VALUES = CI_DIR / "ingress-values.yaml"
HTTPROUTE_VALUES = CI_DIR / "httproute-values.yaml"
HTTPROUTE_CRD = "gateway.networking.k8s.io_httproutes.yaml"
GATEWAY = f"{RELEASE}-gateway"
CREATED_SECRET = f"{RELEASE}-api-keys"
#: Where the chart mounts the API keys Secret (VROOM_API_KEYS_FILE).
KEYS_DIR = "/var/run/secrets/vroom/api-keys"
#: Variables the gateway reads only when their values are set.
OPTIONAL_VARIABLES = (
    "VROOM_API_KEYS_FILE",
    "VROOM_AUTH_READS",
    "VROOM_OIDC_ISSUER",
    "VROOM_OIDC_AUDIENCE",
    "VROOM_OIDC_JWKS_URL",
    "VROOM_FORWARDED_ALLOW_IPS",
)
KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-fedcba9876543210"


def _gateway_pod(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    return spec


def _gateway_container(docs: list[Manifest]) -> dict[str, Any]:
    container: dict[str, Any] = _gateway_pod(docs)["containers"][0]
    assert container["name"] == "gateway"
    return container


def _gateway_env(docs: list[Manifest]) -> dict[str, str | None]:
    return container_env(_gateway_container(docs))


def _api_keys_volume(docs: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The gateway's API keys volume and its mount."""
    pod = _gateway_pod(docs)
    volumes = [v for v in pod["volumes"] if "secret" in v]
    assert len(volumes) == 1, volumes
    mounts = [
        m for m in _gateway_container(docs)["volumeMounts"] if m["name"] == volumes[0]["name"]
    ]
    assert len(mounts) == 1, mounts
    return volumes[0], mounts[0]


def _service_port(docs: list[Manifest], name: str, ref: Mapping[str, Any]) -> dict[str, Any]:
    """The rendered Service's port a backend reference (``name`` or ``number``) means."""
    ports: list[dict[str, Any]] = one(docs, "Service", name)["spec"]["ports"]
    found = [p for p in ports if p.get("name") == ref.get("name") or p["port"] == ref.get("number")]
    assert len(found) == 1, (ref, ports)
    return found[0]


def _fails(values: Mapping[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render_raw(values)
    return str(caught.value)


def _k8s_errors(doc: Manifest) -> list[str]:
    try:
        kubernetes_validate.validate(strip_source(doc), KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{exc.message} at {list(exc.path)}"]
    return []


# --- exposure -----------------------------------------------------------------------


def test_nothing_is_exposed_and_no_key_is_mounted_by_default() -> None:
    docs = render()
    assert of_kind(docs, "Ingress") == []
    assert of_kind(docs, "HTTPRoute") == []
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == []
    assert [v for v in _gateway_pod(docs)["volumes"] if "secret" in v] == []
    env = _gateway_env(docs)
    assert [name for name in OPTIONAL_VARIABLES if name in env] == []
    assert env["VROOM_CORS_ORIGINS"] == "http://localhost:3000,http://127.0.0.1:3000"
    assert env["VROOM_CORS_ALLOW_CREDENTIALS"] == "false"


def test_ingress_validates_and_terminates_tls_for_its_host() -> None:
    values = load_values(INGRESS_VALUES)["ingress"]
    docs = render(INGRESS_VALUES)
    ingress = one(docs, "Ingress", GATEWAY)
    assert _k8s_errors(ingress) == []
    spec = ingress["spec"]
    assert spec["ingressClassName"] == values["className"]
    assert spec["tls"] == [{"hosts": [values["host"]], "secretName": values["tls"]["secretName"]}]
    assert [rule["host"] for rule in spec["rules"]] == [values["host"]]
    (path,) = spec["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = one(docs, "Service", backend["name"])
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    assert _service_port(docs, backend["name"], backend["port"])["name"] == "http"
    annotations = strip_source(ingress)["metadata"]["annotations"]
    assert annotations == values["annotations"]


def test_ingress_validation_catches_a_broken_ingress() -> None:
    """The schema check above can fail: an unknown pathType field is an error."""
    ingress = copy.deepcopy(one(render(INGRESS_VALUES), "Ingress"))
    ingress["spec"]["rules"][0]["http"]["paths"][0]["pathTyp"] = "Prefix"
    assert _k8s_errors(ingress) != []


def test_ingress_without_tls_serves_its_host_over_http() -> None:
    docs = render({"ingress": {"enabled": True, "host": "vroom.example.org"}})
    spec = one(docs, "Ingress", GATEWAY)["spec"]
    assert "tls" not in spec
    assert "ingressClassName" not in spec
    assert spec["rules"][0]["host"] == "vroom.example.org"


def _httproute_errors(doc: Manifest) -> list[str]:
    return crd_errors(doc, GATEWAY_API_SCHEMAS / HTTPROUTE_CRD)


def test_httproute_validates_against_the_gateway_api_crd() -> None:
    values = load_values(HTTPROUTE_VALUES)["httpRoute"]
    docs = render(HTTPROUTE_VALUES)
    route = one(docs, "HTTPRoute", GATEWAY)
    assert _httproute_errors(route) == []
    spec = route["spec"]
    assert spec["parentRefs"] == values["parentRefs"]
    assert spec["hostnames"] == values["hostnames"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    service = one(docs, "Service", backend["name"])
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    port = _service_port(docs, backend["name"], {"number": backend["port"]})
    assert port["name"] == "http"
    assert set(backend) == {"name", "port"}  # a Service in the route's namespace


def test_httproute_validation_catches_a_broken_route() -> None:
    """The CRD check above can fail: a typo and an impossible port are errors."""
    route = copy.deepcopy(one(render(HTTPROUTE_VALUES), "HTTPRoute"))
    route["spec"]["rules"][0]["backendRefs"][0]["portNumber"] = 8000
    route["spec"]["parentRefs"][0]["port"] = 70000
    errors = _httproute_errors(route)
    assert any("portNumber" in e for e in errors), errors
    assert any(e.startswith("spec/parentRefs/0/port") for e in errors), errors


def test_ingress_and_httproute_together_fail() -> None:
    both = {
        "ingress": {"enabled": True, "host": "vroom.example.com"},
        "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}]},
    }
    assert "pick one" in _fails(both)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"ingress": {"enabled": True}}, "ingress.host is required"),
        ({"httpRoute": {"enabled": True}}, "httpRoute.parentRefs is required"),
    ],
    ids=["ingress-host", "route-parents"],
)
def test_exposure_needs_its_address(values: dict[str, Any], needle: str) -> None:
    assert needle in _fails(values)


@pytest.mark.parametrize("values_file", [INGRESS_VALUES, HTTPROUTE_VALUES], ids=lambda p: p.name)
def test_gateway_policy_admits_the_ingress_controller(values_file: Path) -> None:
    """The controller's or Gateway's proxy pods live in another namespace: the gateway's
    NetworkPolicy admits any source on its port (a rule with no `from`)."""
    port = one(render(values_file), "Service", GATEWAY)["spec"]["ports"][0]["port"]
    policy = one(render(values_file), "NetworkPolicy", GATEWAY)
    assert "Ingress" in policy["spec"]["policyTypes"]
    open_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if "from" not in rule and {"protocol": "TCP", "port": port} in rule["ports"]
    ]
    assert open_rules != []


# --- CORS and limits ---------------------------------------------------------------------


def test_cors_origins_reach_the_gateway_comma_separated() -> None:
    values = load_values(INGRESS_VALUES)["gateway"]["cors"]
    env = _gateway_env(render(INGRESS_VALUES))
    assert env["VROOM_CORS_ORIGINS"] == ",".join(values["origins"])
    assert env["VROOM_CORS_ALLOW_CREDENTIALS"] == "true"
    settings = StackSettings.model_validate(
        {
            "cors_origins": env["VROOM_CORS_ORIGINS"],
            "cors_allow_credentials": env["VROOM_CORS_ALLOW_CREDENTIALS"],
        }
    )
    assert settings.cors_origins == values["origins"]
    assert settings.cors_allow_credentials is True


def test_wildcard_origin_with_credentials_fails() -> None:
    cors = {"origins": ["https://app.example.com", "*"], "allowCredentials": True}
    message = _fails({"gateway": {"cors": cors}})
    assert "gateway.cors" in message
    assert "allowCredentials" in message
    # "*" alone is fine when asked for explicitly.
    env = _gateway_env(render({"gateway": {"cors": {"origins": ["*"]}}}))
    assert env["VROOM_CORS_ORIGINS"] == "*"


def test_limits_reach_their_variables() -> None:
    values = load_values(INGRESS_VALUES)["gateway"]
    env = _gateway_env(render(INGRESS_VALUES))
    limits = values["limits"]
    assert env["VROOM_MAX_BODY_BYTES"] == str(limits["maxBodyBytes"])
    assert env["VROOM_RATE_LIMIT_COSTLY"] == limits["rateLimitCostly"]
    assert env["VROOM_RATE_LIMIT_BENCHMARK"] == limits["rateLimitBenchmark"]
    assert env["VROOM_FORWARDED_ALLOW_IPS"] == values["forwardedAllowIps"]
    defaults = _gateway_env(render())
    assert defaults["VROOM_MAX_BODY_BYTES"] == "1048576"
    assert defaults["VROOM_RATE_LIMIT_COSTLY"] == "30/minute"
    assert defaults["VROOM_RATE_LIMIT_BENCHMARK"] == "6/minute"
    off = _gateway_env(render({"gateway": {"limits": {"rateLimitCostly": ""}}}))
    assert off["VROOM_RATE_LIMIT_COSTLY"] == ""


# --- authentication -----------------------------------------------------------------------


def test_created_secret_holds_the_keys_and_is_mounted_as_a_directory() -> None:
    keys = load_values(INGRESS_VALUES)["auth"]["keys"]
    docs = render(INGRESS_VALUES)
    secret = one(docs, "Secret", CREATED_SECRET)
    assert _k8s_errors(secret) == []
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert secret["data"] == {
        f"key-{i}": base64.b64encode(key.encode()).decode() for i, key in enumerate(keys)
    }
    volume, mount = _api_keys_volume(docs)
    assert volume["secret"]["secretName"] == CREATED_SECRET
    assert "items" not in volume["secret"]  # every key of the Secret, as files
    assert "subPath" not in mount  # a subPath mount would never see a rotation
    assert mount["mountPath"] == KEYS_DIR
    env = _gateway_env(docs)
    assert env["VROOM_API_KEYS_FILE"] == mount["mountPath"]
    assert env["VROOM_AUTH_READS"] == "true"


def test_existing_secret_is_mounted_and_none_is_created() -> None:
    existing = load_values(HTTPROUTE_VALUES)["auth"]["existingSecret"]
    docs = render(HTTPROUTE_VALUES)
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == []
    volume, mount = _api_keys_volume(docs)
    assert volume["secret"]["secretName"] == existing
    assert "subPath" not in mount
    assert _gateway_env(docs)["VROOM_API_KEYS_FILE"] == mount["mountPath"] == KEYS_DIR


@pytest.mark.parametrize("values_file", [INGRESS_VALUES, HTTPROUTE_VALUES], ids=lambda p: p.name)
def test_the_api_keys_volume_is_read_only(values_file: Path) -> None:
    volume, mount = _api_keys_volume(render(values_file))
    assert mount["readOnly"] is True
    assert volume["secret"]["defaultMode"] & 0o222 == 0  # no write bit for anyone


def test_keys_in_values_reach_the_secret_in_order() -> None:
    docs = render({"auth": {"enabled": True, "keys": [KEY_B, KEY_A]}})
    data = one(docs, "Secret", CREATED_SECRET)["data"]
    decoded = {name: base64.b64decode(value).decode() for name, value in data.items()}
    assert decoded == {"key-0": KEY_B, "key-1": KEY_A}
    env = _gateway_env(docs)
    assert env["VROOM_AUTH_READS"] == "false"
    assert "VROOM_OIDC_ISSUER" not in env


@pytest.mark.parametrize(
    ("auth", "needle"),
    [
        ({"enabled": True}, "no credential is configured"),
        ({"enabled": True, "oidc": {"audience": "vroom"}}, "no credential is configured"),
        ({"enabled": True, "existingSecret": "keys", "keys": [KEY_A]}, "not both"),
    ],
    ids=["nothing", "audience-only", "secret-and-keys"],
)
def test_auth_without_keys_or_oidc_fails(auth: dict[str, Any], needle: str) -> None:
    message = _fails({"auth": auth})
    assert needle in message
    assert "auth" in message


def test_oidc_alone_needs_no_keys() -> None:
    oidc = load_values(HTTPROUTE_VALUES)["auth"]["oidc"]
    docs = render({"auth": {"enabled": True, "oidc": oidc}})
    env = _gateway_env(docs)
    assert env["VROOM_OIDC_ISSUER"] == oidc["issuer"]
    assert env["VROOM_OIDC_AUDIENCE"] == oidc["audience"]
    assert "VROOM_OIDC_JWKS_URL" not in env  # discovered from the issuer
    assert "VROOM_API_KEYS_FILE" not in env
    assert [v for v in _gateway_pod(docs)["volumes"] if "secret" in v] == []
    assert of_kind(docs, "Secret") == []


def test_auth_values_are_ignored_while_auth_is_off() -> None:
    auth = {"enabled": False, "keys": [KEY_A], "oidc": {"issuer": "https://idp.example.com"}}
    docs = render({"auth": auth})
    assert of_kind(docs, "Secret") == []
    env = _gateway_env(docs)
    assert [name for name in OPTIONAL_VARIABLES if name in env] == []


def _egress_ports(policy: Manifest) -> list[set[int]]:
    """The port sets of the policy's egress rules to ipBlocks (outside the release)."""
    return [
        {p["port"] for p in rule["ports"]}
        for rule in policy["spec"]["egress"]
        if any("ipBlock" in peer for peer in rule["to"])
    ]


def test_the_gateway_may_reach_the_oidc_issuer_and_jwks() -> None:
    oidc = {
        "issuer": "https://idp.example.com:8443/realms/vroom",
        "jwksUrl": "http://keys.example.com/jwks.json",
    }
    without = _egress_ports(one(render(), "NetworkPolicy", GATEWAY))
    with_oidc = _egress_ports(
        one(render({"auth": {"enabled": True, "oidc": oidc}}), "NetworkPolicy", GATEWAY)
    )
    extra = list(with_oidc)
    for ports in without:
        extra.remove(ports)
    assert extra == [{8443, 80}]


# --- values.schema.json ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"gateway": {"cors": {"origins": ["https://app.example.com/"]}}}, ["/gateway/cors"]),
        ({"gateway": {"cors": {"origins": "http://a.example.com"}}}, ["/gateway/cors/origins"]),
        ({"gateway": {"cors": {"allowCredentials": "yes"}}}, ["/gateway/cors/allowCredentials"]),
        ({"gateway": {"limits": {"maxBodyBytes": 100}}}, ["/gateway/limits/maxBodyBytes"]),
        ({"gateway": {"limits": {"rateLimitCostly": "30/minut"}}}, ["rateLimitCostly"]),
        ({"gateway": {"forwardedAllowIps": "proxies"}}, ["/gateway/forwardedAllowIps"]),
        ({"auth": {"keys": ["short"]}}, ["/auth/keys/0"]),
        ({"auth": {"keys": ["has a space in it, so no"]}}, ["/auth/keys/0"]),
        ({"auth": {"oidc": {"issuer": "login.example.com"}}}, ["/auth/oidc/issuer"]),
        ({"auth": {"apiKeys": []}}, ["/auth", "apiKeys"]),
        ({"ingress": {"tls": {"secret": "x"}}}, ["/ingress/tls", "secret"]),
        ({"ingress": {"host": "Vroom Example"}}, ["/ingress/host"]),
        ({"httpRoute": {"parentRefs": [{"namespace": "gw"}]}}, ["/httpRoute/parentRefs/0"]),
        ({"httpRoute": {"parentRefs": [{"name": "g", "port": 443}]}}, ["port"]),
    ],
    ids=[
        "origin-path",
        "origins-string",
        "credentials-bool",
        "body-too-small",
        "rate-limit",
        "forwarded-ips",
        "key-short",
        "key-space",
        "issuer-url",
        "auth-typo",
        "tls-typo",
        "host",
        "parent-name",
        "parent-unknown",
    ],
)
def test_schema_rejects_bad_edge_values(values: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        render_raw(values)
    for name in names:
        assert name in str(caught.value), str(caught.value)


# --- NOTES.txt ---------------------------------------------------------------------------


def test_notes_name_the_ingress_host_when_enabled() -> None:
    host = load_values(INGRESS_VALUES)["ingress"]["host"]
    notes = render_raw(load_values(INGRESS_VALUES))[f"{RELEASE}/templates/NOTES.txt"]
    assert f"curl https://{host}/health" in notes
    assert "port-forward" in notes  # still the way in from a workstation
    default = render_raw()[f"{RELEASE}/templates/NOTES.txt"]
    assert host not in default
    assert "Ingress" not in default
