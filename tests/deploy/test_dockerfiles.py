"""The Dockerfiles: lint-clean, and built and started by the same scripts the tests use."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.deploy_files import REPO, tool

DOCKERFILE = REPO / "deploy/docker/Dockerfile"


def dockerfiles() -> list[Path]:
    skip = {".git", "node_modules", ".venv"}
    return sorted(
        p for p in REPO.rglob("*Dockerfile*") if p.is_file() and not skip.intersection(p.relative_to(REPO).parts)
    )


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_the_repository_has_the_one_dockerfile_of_adr_0001() -> None:
    assert dockerfiles() == [DOCKERFILE]


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_finds_nothing_at_its_strictest_threshold(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_venv_is_built_by_scripts_venv_sh_from_the_pinned_requirements() -> None:
    runs = " ".join(args for keyword, args in instructions(DOCKERFILE) if keyword == "RUN")
    copies = [args for keyword, args in instructions(DOCKERFILE) if keyword == "COPY"]
    assert "scripts/venv.sh" in runs
    assert "requirements.txt ./" in copies
    assert "scripts/venv.sh scripts/" in copies
    # No second installer path: pip is never pointed at requirements directly.
    assert "pip install" not in runs


def test_the_embedding_image_prepares_its_models_with_the_make_models_step() -> None:
    makefile = (REPO / "Makefile").read_text()
    make_models = re.search(r"^models:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert make_models is not None
    assert "-m scripts.prepare_models" in make_models.group(1)
    runs = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "RUN"]
    assert any("python -m scripts.prepare_models" in args and '"${SERVICE}" = embedding' in args for args in runs)


def test_the_container_starts_the_service_module_as_the_local_stack_does() -> None:
    local_stack = (REPO / "scripts/local_stack.py").read_text()
    assert '"-m", f"services.{name}"' in local_stack
    cmd = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "CMD"]
    assert cmd == ['["/bin/sh", "-c", "exec python -m \\"services.${BUNDLEWISE_SERVICE}\\""]']
    assert ("ENV", "BUNDLEWISE_SERVICE=${SERVICE}") in final_stage(DOCKERFILE)


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in final_stage(DOCKERFILE) if keyword == "USER"]
    assert users == ["10001:10001"]


def test_base_images_are_pinned_to_an_exact_version() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert default is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default.group(1))
    froms = [args for keyword, args in instructions(DOCKERFILE) if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_everything_the_dockerfile_copies_from_the_context_is_let_through_by_dockerignore() -> None:
    allowed = [
        line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    sources: list[str] = []
    for keyword, args in instructions(DOCKERFILE):
        if keyword == "COPY" and not args.startswith("--from="):
            sources.extend(part.rstrip("/") for part in args.split()[:-1])
    assert sources, "the Dockerfile copies nothing from the build context"
    for source in sources:
        assert any(source == a or source.startswith(a + "/") for a in allowed), (
            f"{source} is not in .dockerignore's allowlist"
        )
        assert (REPO / source).exists(), source


def test_the_build_context_starts_from_nothing_and_lets_in_no_secrets_or_tests() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    assert not [a for a in allowed if a.startswith((".env", "tests", "deploy", ".git", "docs"))]
