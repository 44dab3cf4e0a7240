"""Static checks of the one Dockerfile (no container engine runs here).

Every deployable is built from the repository root by ``Dockerfile``, with the build
arguments ``skaffold.yaml`` gives its artifact (``MEMBER``, ``PACKAGE``, ``MODULE``).
The tests read it with dockerfile-parse, substitute each image's arguments as the
builder would, and hold every image to the packaging rules: multi-stage, uv with the
lock (``--frozen``) for exactly one workspace member, a slim Python base pinned to a
patch version, a non-root numeric user, no build tools in the runtime stage,
``python -m <module>`` as entry point, and COPY sources that exist in the repository
and that ``.dockerignore`` does not drop from the build context. The workspace facts
(members, their dependencies, their packages) come from the pyproject files, so a
change there that an image misses fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import pytest
from dockerfile_parse import DockerfileParser

from tests.k8s.test_skaffold import IMAGE_PREFIX, artifacts, load_config
from vroom_cli.stack.settings import StackSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
#: The build arguments every artifact gives the Dockerfile.
BUILD_ARGS = {"MEMBER", "PACKAGE", "MODULE"}


@cache
def build_args() -> dict[str, dict[str, str]]:
    """Image (component) -> its build arguments, from skaffold.yaml."""
    return {
        image.removeprefix(IMAGE_PREFIX): {
            k: str(v) for k, v in artifact["docker"]["buildArgs"].items()
        }
        for image, artifact in artifacts(load_config()).items()
    }


def image_member(component: str) -> tuple[str, str]:
    """The workspace member an image installs and the module it runs."""
    args = build_args()[component]
    return args["PACKAGE"], args["MODULE"]


#: Where the runtime stage keeps the Feast repository (VROOM_FEAST_REPO).
FEAST_REPO_IN_IMAGE = "/app/feature_repo"
#: What the runtime stage must never contain.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|make|build-essential|python3?-dev|libc6?-dev|cargo|rustc|"
    r"pip\s+install|uv\s+(sync|pip))\b"
)
PINNED_PYTHON_SLIM = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?$")
PINNED_UV = re.compile(r"^ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+$")


# -- the workspace, from its pyproject files ------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One uv workspace member."""

    name: str
    path: str  # relative to the repository root, posix
    workspace_deps: frozenset[str]
    feast: bool  # depends on vroom-features with the [feast] extra
    packages: tuple[str, ...] = field(default=())  # hatch wheel packages, relative to path


def _requirement_name(requirement: str) -> tuple[str, set[str]]:
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(\[([^\]]*)\])?", requirement)
    assert match, requirement
    extras = {e.strip() for e in (match.group(3) or "").split(",") if e.strip()}
    return match.group(1).lower().replace("_", "-"), extras


@cache
def workspace() -> dict[str, Member]:
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    paths = root["tool"]["uv"]["workspace"]["members"]
    raw = {}
    for path in paths:
        data = tomllib.loads((REPO_ROOT / path / "pyproject.toml").read_text())
        raw[data["project"]["name"]] = (path, data)
    members = {}
    for name, (path, data) in raw.items():
        deps, feast = set(), False
        for requirement in data["project"].get("dependencies", []):
            dep, extras = _requirement_name(requirement)
            if dep in raw and dep != name:
                deps.add(dep)
                feast = feast or (dep == "vroom-features" and "feast" in extras)
        packages = tuple(data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
        members[name] = Member(name, path, frozenset(deps), feast, packages)
    return members


def closure(name: str) -> set[str]:
    """``name`` and every workspace member it depends on, transitively."""
    members, seen, todo = workspace(), set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(members[current].workspace_deps)
    return seen


# -- .dockerignore -------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus ``**``) as a regex on posix paths."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "$")


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        rules.append((negate, _pattern_regex(pattern)))
    return tuple(rules)


def is_ignored(relpath: str) -> bool:
    """Whether the build context leaves ``relpath`` out (a pattern on any parent counts)."""
    parts = PurePosixPath(relpath).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in dockerignore_rules():  # the last matching rule wins
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def context_files(relpath: str) -> list[str]:
    """The files under ``relpath`` that reach the build context."""
    path = REPO_ROOT / relpath
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    rel = [p.relative_to(REPO_ROOT).as_posix() for p in files]
    return [r for r in rel if not is_ignored(r)]


# -- a Dockerfile, split into stages -------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, value)

    def values(self, instruction: str) -> list[str]:
        return [value for ins, value in self.instructions if ins == instruction]


@dataclass
class Copy:
    flags: dict[str, str]
    sources: list[str]
    dest: str


def parse_copy(value: str) -> Copy:
    words = shlex.split(value)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, flag_value = words.pop(0)[2:].partition("=")
        flags[key] = flag_value
    return Copy(flags, words[:-1], words[-1])


def parse_env(value: str) -> dict[str, str]:
    words = shlex.split(value)
    if words and "=" not in words[0]:  # legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def substitute(value: str, args: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` of the build arguments, as the builder expands them."""
    return re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


@cache
def stages(component: str) -> tuple[Stage, ...]:
    """The Dockerfile's stages with ``component``'s build arguments substituted."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    args = build_args()[component]
    result: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "COMMENT":
            continue
        if instruction != "ARG":
            value = substitute(value, args)
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name, []))
        else:
            assert result, f"{instruction} before the first FROM"
            result[-1].instructions.append((instruction, value))
    return tuple(result)


def final(component: str) -> Stage:
    return stages(component)[-1]


def stage_names(component: str) -> set[str]:
    return {s.name for s in stages(component) if s.name}


def uv_syncs(component: str) -> list[tuple[int, int, str]]:
    """(stage index, instruction index, command) of every RUN that runs ``uv sync``."""
    found = []
    for s_index, stage in enumerate(stages(component)):
        for i_index, (ins, value) in enumerate(stage.instructions):
            if ins == "RUN" and "uv sync" in value:
                found.append((s_index, i_index, value))
    return found


def sync_flags(command: str) -> list[str]:
    return shlex.split(command[command.index("uv sync") :])[2:]


COMPONENTS = sorted(build_args())


# -- tests -----------------------------------------------------------------------------------


def test_one_dockerfile_builds_every_deployable() -> None:
    found = sorted(
        p.relative_to(REPO_ROOT).as_posix()
        for p in REPO_ROOT.rglob("*Dockerfile*")
        if not any(part.startswith(".") for part in p.relative_to(REPO_ROOT).parts)
    )
    assert found == ["Dockerfile"]
    services = {name for name in workspace() if workspace()[name].path.startswith("services/")}
    assert services | {"vroom-pipelines"} == {image_member(c)[0] for c in build_args()}


@pytest.mark.parametrize("component", COMPONENTS)
def test_build_arguments_name_a_member_its_package_and_module(component: str) -> None:
    args = build_args()[component]
    assert set(args) == BUILD_ARGS
    member = workspace()[args["PACKAGE"]]
    assert member.path == args["MEMBER"]
    declared = {
        item["value"].split("=")[0]
        for item in DockerfileParser(path=str(DOCKERFILE)).structure
        if item["instruction"] == "ARG"
    }
    assert declared == BUILD_ARGS, "every build argument is declared, none is unused"


@pytest.mark.parametrize("component", COMPONENTS)
def test_parses_into_several_stages(component: str) -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    assert parser.is_multistage
    assert len(stages(component)) >= 2
    assert final(component).name, "name the runtime stage (FROM ... AS runtime)"


@pytest.mark.parametrize("component", COMPONENTS)
def test_base_images_are_pinned(component: str) -> None:
    names = stage_names(component)
    for stage in stages(component):
        if stage.base in names:
            continue
        assert ":" in stage.base.rsplit("/", 1)[-1], f"{stage.base} has no tag"
        assert not stage.base.endswith(":latest"), stage.base
        assert PINNED_PYTHON_SLIM.match(stage.base) or PINNED_UV.match(stage.base), (
            f"{stage.base}: expected python:3.11.<patch>-slim[-<debian>] or the uv image "
            "pinned to a version"
        )
    assert PINNED_PYTHON_SLIM.match(final(component).base), final(component).base


@pytest.mark.parametrize("component", COMPONENTS)
def test_builder_and_runtime_share_the_python(component: str) -> None:
    """The venv's interpreter symlinks point into the builder's Python: same image."""
    builders = [s for s in stages(component)[:-1] if any("uv sync" in v for v in s.values("RUN"))]
    assert len(builders) == 1
    assert builders[0].base == final(component).base


@pytest.mark.parametrize("component", COMPONENTS)
def test_runs_as_a_numeric_non_root_user(component: str) -> None:
    users = final(component).values("USER")
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"USER {users[-1]}: use a numeric uid (runAsNonRoot checks it)"
    assert int(uid) >= 1000, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]
    # The chart's securityContext uses the same id.
    assert int(uid) == 10001


@pytest.mark.parametrize("component", COMPONENTS)
def test_copy_sources_exist_in_the_build_context(component: str) -> None:
    for stage in stages(component):
        for value in stage.values("COPY") + stage.values("ADD"):
            copy = parse_copy(value)
            if "from" in copy.flags:
                assert copy.flags["from"] in stage_names(component) or PINNED_UV.match(
                    copy.flags["from"]
                ), f"COPY --from={copy.flags['from']} is neither a stage nor a pinned image"
                continue
            for source in copy.sources:
                assert not any(ch in source for ch in "*?["), f"name files exactly: {source}"
                assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not is_ignored(source), f"COPY {source}: .dockerignore excludes it"
                assert context_files(source), f"COPY {source}: nothing of it reaches the context"


@pytest.mark.parametrize("component", COMPONENTS)
def test_runtime_stage_has_no_build_tools(component: str) -> None:
    runtime = final(component)
    for command in runtime.values("RUN"):
        assert not BUILD_TOOLS.search(command), f"build tooling in the runtime stage: {command}"
        assert "apt-get install" not in command, command
    for value in runtime.values("COPY") + runtime.values("ADD"):
        copy = parse_copy(value)
        if "from" in copy.flags:
            # Only the virtualenv comes from another stage (no uv binary, no sources).
            assert copy.sources == ["/app/.venv"], value
    assert "-slim" in runtime.base


@pytest.mark.parametrize("component", COMPONENTS)
def test_entry_point_runs_the_members_module(component: str) -> None:
    package, module = image_member(component)
    runtime = final(component)
    entrypoints = runtime.values("ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT"
    env: dict[str, str] = {}
    for value in runtime.values("ENV"):
        env.update(parse_env(value))
    assert env["VROOM_MODULE"] == module
    # The exec form through sh only to expand the module; exec leaves Python as PID 1.
    command = json.loads(entrypoints[-1])
    assert command[:2] == ["sh", "-c"]
    assert command[2] == 'exec python -m "$VROOM_MODULE" "$@"'
    assert shlex.split(command[2].replace('"$VROOM_MODULE"', module))[:3] == [
        "exec",
        "python",
        "-m",
    ]
    member = workspace()[package]
    assert any(PurePosixPath(p).name == module for p in member.packages), (
        f"{package} does not package {module}"
    )
    main = next(
        REPO_ROOT / member.path / p / "__main__.py"
        for p in member.packages
        if PurePosixPath(p).name == module
    )
    assert main.is_file(), f"{main} missing: `python -m {module}` would fail"


@pytest.mark.parametrize("component", COMPONENTS)
def test_uv_sync_installs_only_this_member_from_the_lock(component: str) -> None:
    package, _ = image_member(component)
    syncs = uv_syncs(component)
    assert len(syncs) == 2, "one sync for the dependencies, one for our code"
    for _, _, command in syncs:
        flags = sync_flags(command)
        assert "--frozen" in flags or "--locked" in flags
        assert "--frozen" in flags, "--frozen: install exactly the lock, never re-resolve"
        assert "--no-dev" in flags
        assert "--no-editable" in flags
        assert flags[flags.index("--package") + 1] == package
        assert "--all-packages" not in flags
        assert "--mount=type=cache,target=/root/.cache/uv" in command
    assert "--no-install-workspace" in sync_flags(syncs[0][2])
    assert "--no-install-workspace" not in sync_flags(syncs[1][2])


@pytest.mark.parametrize("component", COMPONENTS)
def test_layers_copy_the_lock_first_then_the_needed_sources(component: str) -> None:
    """Lock + every pyproject before the dependency layer; then the shared libraries and
    this member's sources (no other service's) before the second sync."""
    package, _ = image_member(component)
    (stage_index, first, _), (_, second, _) = uv_syncs(component)
    builder = stages(component)[stage_index]
    members = workspace()
    before, between = [], []
    for index, (ins, value) in enumerate(builder.instructions):
        if ins == "COPY" and "--from" not in value:
            (before if index < first else between if index < second else []).extend(
                parse_copy(value).sources
            )
    expected_manifests = {"uv.lock", "pyproject.toml"} | {
        f"{m.path}/pyproject.toml" for m in members.values()
    }
    assert set(before) == expected_manifests, "the dependency layer sees only manifests"

    copied_members = set()
    for source in between:
        owner = [m for m in members.values() if source.startswith(m.path + "/")]
        assert owner, f"{source} belongs to no workspace member"
        copied_members.add(owner[0].name)
        assert not source.endswith("pyproject.toml")
    assert closure(package) <= copied_members
    services = {
        m for m in copied_members if not members[m].path.startswith(("libs/", "feature_repo"))
    }
    assert services == {package}, "an image copies no other service's code"
    for name in closure(package):
        member = members[name]
        for pkg in member.packages:
            assert f"{member.path}/{pkg}" in between or any(
                f"{member.path}/{pkg}".startswith(s.rstrip("/") + "/") for s in between
            ), f"{member.path}/{pkg} is not copied"


@pytest.mark.parametrize("component", COMPONENTS)
def test_runtime_environment(component: str) -> None:
    env: dict[str, str] = {}
    for value in final(component).values("ENV"):
        env.update(parse_env(value))
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["VROOM_LOG_FORMAT"] == "json"
    assert env["VROOM_HOST"] == "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    assert StackSettings.env_name("host") == "VROOM_HOST"
    assert env["VROOM_STATE_DIR"].startswith("/")
    # Every image carries the Feast configuration (a few bytes where Feast is unused).
    assert env.get("VROOM_FEAST_REPO") == FEAST_REPO_IN_IMAGE
    assert StackSettings.env_name("feast_repo") == "VROOM_FEAST_REPO"
    copies = [parse_copy(v) for v in final(component).values("COPY")]
    assert any(
        c.sources == ["feature_repo/feature_store.yaml"]
        and c.dest == f"{FEAST_REPO_IN_IMAGE}/feature_store.yaml"
        for c in copies
    ), "Feast needs feature_store.yaml in VROOM_FEAST_REPO"


def test_dockerignore_keeps_local_state_out_and_manifests_in() -> None:
    for path in [
        ".venv/bin/python",
        ".vroom/vroom.db",
        ".git/HEAD",
        "tests/conftest.py",
        "docs/architecture.md",
        "libs/common/src/vroom_common/__pycache__/settings.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        "services/gateway/.venv/x",
    ]:
        assert is_ignored(path), f"{path} reaches the build context"
    for path in ["uv.lock", "pyproject.toml", "libs/common/src/vroom_common/settings.py"]:
        assert not is_ignored(path), f"{path} is needed by the builds"


def test_dockerignore_matcher() -> None:
    """The matcher follows Docker's rules: ``**``, parents, and last rule wins."""
    regex = _pattern_regex("**/__pycache__")
    assert regex.match("__pycache__")
    assert regex.match("a/b/__pycache__")
    assert not regex.match("a/__pycache__x")
    assert _pattern_regex("*.md").match("README.md")
    assert not _pattern_regex("*.md").match("docs/README.md")
