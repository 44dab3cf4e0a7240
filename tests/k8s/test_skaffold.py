"""skaffold.yaml: valid for skaffold/v4beta14, one artifact per component, and the
chart it deploys really runs the images it builds.

The schema is ``../shared/schemas/skaffold/v4beta14.json`` (read in place, never
copied; the schema tests skip when it is absent). Profiles are checked as Skaffold
applies them: their JSON patches on top of the base config, then the overlay of the
fields they set. The chart is rendered with the real Helm engine (``render.py``) with
the values Skaffold passes, as ``helm --set`` would.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from vroom_cli.stack.settings import StackSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD_FILE = REPO_ROOT / "skaffold.yaml"
SKAFFOLD_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "skaffold" / "v4beta14.json"
CHART_DIR = REPO_ROOT / "charts" / "vroom-forecast"

#: The chart's image components; each has an artifact vroom-forecast/<component>.
COMPONENTS = ("gateway", "features", "predictor", "materializer", "pipelines", "controller")
IMAGE_PREFIX = "vroom-forecast/"
#: What a Skaffold tag looks like in the rendered manifests of these tests.
SAMPLE_TAG = "0123456789ab"

TEMPLATE_FIELD = re.compile(r"\{\{\s*\.(IMAGE_[A-Z_]+?)_([A-Za-z0-9_]+)\s*\}\}")


# -- the config, as Skaffold reads it ----------------------------------------------------------


def load_config() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(SKAFFOLD_FILE.read_text()) if d]
    assert len(docs) == 1, "one Config document"
    return docs[0]


def sanitize(artifact: str) -> str:
    """Skaffold's name of an artifact in template fields: / - . become _."""
    return re.sub(r"[/.-]", "_", artifact)


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add / remove / replace, as Skaffold applies a profile's patches."""
    result = copy.deepcopy(config)
    for patch in patches:
        *parents, last = _pointer(patch["path"])
        node: Any = result
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        op = patch["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, patch["value"])
            elif op == "remove":
                del node[index]
            elif op == "replace":
                node[index] = patch["value"]
            else:
                raise AssertionError(f"unsupported op {op}")
        else:
            if op in ("remove", "replace"):
                assert last in node, f"{patch['path']}: nothing to {op}"
            if op == "remove":
                del node[last]
            elif op in ("add", "replace"):
                node[last] = patch["value"]
            else:
                raise AssertionError(f"unsupported op {op}")
    return result


def _overlay(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _overlay(base.get(key), value) if key in base else value
        return merged
    return over


def with_profile(name: str) -> dict[str, Any]:
    """The effective config with profile ``name``: its patches, then its fields."""
    config = load_config()
    profile = next(p for p in config.get("profiles", []) if p["name"] == name)
    effective = apply_patches(config, profile.get("patches", []))
    fields = {
        k: v
        for k, v in profile.items()
        if k not in ("name", "activation", "patches", "requiresAllActivations")
    }
    effective = _overlay(effective, fields)
    effective.pop("profiles", None)
    return effective


def release(config: dict[str, Any]) -> dict[str, Any]:
    releases = config["deploy"]["helm"]["releases"]
    assert len(releases) == 1
    return releases[0]


def artifacts(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["image"]: a for a in config["build"]["artifacts"]}


# -- the values Skaffold hands to Helm ------------------------------------------------------------


def _parse_set_value(value: Any) -> Any:
    """``helm --set`` typing: integers and booleans are parsed, the rest is a string."""
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def image_fields(config: dict[str, Any]) -> dict[str, str]:
    """Template field -> value for every artifact (repository = artifact name)."""
    fields: dict[str, str] = {}
    for image in artifacts(config):
        name = sanitize(image)
        fields[f"IMAGE_REPO_{name}"] = image
        fields[f"IMAGE_TAG_{name}"] = SAMPLE_TAG
        fields[f"IMAGE_FULLY_QUALIFIED_{name}"] = f"{image}:{SAMPLE_TAG}"
    return fields


def helm_values(config: dict[str, Any]) -> dict[str, Any]:
    """The values of ``config``'s release: setValueTemplates (expanded) and setValues."""
    rel = release(config)
    fields = image_fields(config)
    values: dict[str, Any] = {}

    def expand(match: re.Match[str]) -> str:
        key = f"{match.group(1)}_{match.group(2)}"
        assert key in fields, f"{{{{.{key}}}}} names no artifact"
        return fields[key]

    for key, template in rel.get("setValueTemplates", {}).items():
        _set_path(values, key, _parse_set_value(TEMPLATE_FIELD.sub(expand, str(template))))
    for key, value in rel.get("setValues", {}).items():
        _set_path(values, key, _parse_set_value(value))
    return values


def value_keys(config: dict[str, Any]) -> list[str]:
    rel = release(config)
    return [*rel.get("setValueTemplates", {}), *rel.get("setValues", {})]


def require_chart() -> None:
    if not (CHART_DIR / "Chart.yaml").is_file():
        pytest.skip(f"{CHART_DIR} is not there yet: nothing to wire the images into")


def chart_knows(key: str) -> bool:
    """Whether ``key`` (dotted) is a value of the chart: in values.yaml or its schema."""
    node: Any = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return True
    schema_file = CHART_DIR / "values.schema.json"
    if not schema_file.is_file():
        return False
    node = json.loads(schema_file.read_text())
    for part in key.split("."):
        properties = node.get("properties", {}) if isinstance(node, dict) else {}
        if part not in properties:
            return False
        node = properties[part]
    return True


def render_with(config: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.k8s.render import render  # noqa: PLC0415 - needs the chart, checked first

    rel = release(config)
    return render(helm_values(config), release=rel["name"], namespace=rel["namespace"])


def schema_validator() -> jsonschema.Draft7Validator:
    if not SKAFFOLD_SCHEMA.is_file():
        pytest.skip(f"{SKAFFOLD_SCHEMA} is absent (../shared is not next to the repository)")
    schema = json.loads(SKAFFOLD_SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def profile_names() -> list[str]:
    return [p["name"] for p in load_config().get("profiles", [])]


# -- tests -----------------------------------------------------------------------------------


def test_config_is_valid_v4beta14() -> None:
    config = load_config()
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert config["kind"] == "Config"
    errors = sorted(schema_validator().iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("profile", profile_names())
def test_profile_is_valid_v4beta14_once_applied(profile: str) -> None:
    validator = schema_validator()
    raw = next(p for p in load_config()["profiles"] if p["name"] == profile)
    # The profile itself (schema: Profile), then the config it produces.
    effective = with_profile(profile)
    errors = sorted(validator.iter_errors(effective), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert raw.get("patches") or len(raw) > 1, "an empty profile"


def test_the_schema_rejects_an_unknown_field() -> None:
    """The validation is strict: a misspelt field fails (guards the test itself)."""
    config = load_config()
    config["deploy"]["helm"]["releases"][0]["chartPth"] = "charts/vroom-forecast"
    assert list(schema_validator().iter_errors(config))


def test_one_artifact_per_component_from_the_one_dockerfile() -> None:
    found = artifacts(load_config())
    expected = {f"{IMAGE_PREFIX}{c}" for c in COMPONENTS}
    assert set(found) == expected
    for artifact in found.values():
        assert artifact.get("context", ".") == ".", "the Dockerfile builds from the repository root"
        assert artifact["docker"].get("dockerfile", "Dockerfile") == "Dockerfile"
        assert artifact["docker"]["buildArgs"], "the build arguments pick the member"
    assert (REPO_ROOT / "Dockerfile").is_file()


def test_image_values_come_from_the_built_artifacts() -> None:
    config = load_config()
    templates = release(config)["setValueTemplates"]
    for component in COMPONENTS:
        name = sanitize(f"{IMAGE_PREFIX}{component}")
        assert templates[f"images.{component}.repository"] == f"{{{{.IMAGE_REPO_{name}}}}}"
        assert templates[f"images.{component}.tag"] == f"{{{{.IMAGE_TAG_{name}}}}}"
    # No template names an artifact that is not built.
    names = {sanitize(a) for a in artifacts(config)}
    for template in templates.values():
        for match in TEMPLATE_FIELD.finditer(str(template)):
            assert match.group(2) in names, template
    assert sanitize("vroom-forecast/gateway") == "vroom_forecast_gateway"


def test_release_installs_the_chart() -> None:
    rel = release(load_config())
    assert (REPO_ROOT / rel["chartPath"]).resolve() == CHART_DIR
    assert rel["namespace"]
    assert rel.get("createNamespace") is True


@pytest.mark.parametrize("profile", [None, *profile_names()])
def test_every_value_skaffold_sets_exists_in_the_chart(profile: str | None) -> None:
    require_chart()
    config = with_profile(profile) if profile else load_config()
    unknown = [key for key in value_keys(config) if not chart_knows(key)]
    assert not unknown, f"values the chart does not define: {unknown}"


@pytest.mark.parametrize("profile", [None, *profile_names()])
def test_rendered_release_runs_the_built_images(profile: str | None) -> None:
    require_chart()
    from tests.k8s.render import iter_containers  # noqa: PLC0415

    config = with_profile(profile) if profile else load_config()
    docs = render_with(config)
    ours = {
        container["image"]
        for _, container in iter_containers(docs)
        if container["image"].startswith(IMAGE_PREFIX)
    }
    assert ours == {f"{IMAGE_PREFIX}{c}:{SAMPLE_TAG}" for c in COMPONENTS}


def test_port_forward_reaches_the_gateway_service() -> None:
    require_chart()
    from tests.k8s.render import one  # noqa: PLC0415

    config = load_config()
    forwards = config["portForward"]
    gateway = [f for f in forwards if f["resourceName"].endswith("-gateway")]
    assert len(gateway) == 1
    forward = gateway[0]
    port = StackSettings().gateway_port
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == release(config)["namespace"]
    assert forward["port"] == port
    assert forward["localPort"] == port
    service = one(render_with(config), "Service", forward["resourceName"])
    assert port in [p["port"] for p in service["spec"]["ports"]]


def test_kind_profile_loads_images_into_the_cluster() -> None:
    config = load_config()
    kind = next(p for p in config["profiles"] if p["name"] == "kind")
    kind_config = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())
    context = f"kind-{kind_config['name']}"
    # Skaffold loads images with `kind load` when the context is a kind cluster's and
    # nothing is pushed; the cluster name comes from the context.
    assert {"kubeContext": context} in kind["activation"]
    effective = with_profile("kind")
    assert effective["build"]["local"]["push"] is False
    assert effective["deploy"]["kubeContext"] == context
    # The base release is still there (the profile patches it, does not replace it).
    assert release(effective)["chartPath"] == release(config)["chartPath"]
    assert release(effective)["setValueTemplates"] == release(config)["setValueTemplates"]
    # kind's host port mapping serves localhost:8000; no port-forward competes for it.
    assert all(
        f.get("localPort") != StackSettings().gateway_port for f in effective.get("portForward", [])
    )


def test_patch_helper() -> None:
    base = {"a": {"b": 1}, "l": [1, 2]}
    patched = apply_patches(
        base,
        [
            {"op": "add", "path": "/a/c.d", "value": "x"},
            {"op": "remove", "path": "/l/0"},
            {"op": "replace", "path": "/a/b", "value": 2},
        ],
    )
    assert patched == {"a": {"b": 2, "c.d": "x"}, "l": [2]}
    assert base == {"a": {"b": 1}, "l": [1, 2]}
