"""The repository keeps its word: the scripts install what each needs, the licence is stated
once and matches, and nothing cites a file that is not there."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Paths as prose cites them: `docs/design.md`, `tests/fakes/openai_upstream.py`, `DESIGN.md`.
CITED = re.compile(r"(?<![\w/.-])((?:circuit|docs|scripts|tests)/[\w/.-]+\.(?:md|py|toml)"
                   r"|[A-Z][A-Z_]+\.md)\b")
#: A stand-in for .venv/bin/python that records how the bootstrap called it.
FAKE_PYTHON = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/../../calls.log"\n'


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the bootstrap and pyproject.toml with a .venv whose python only logs."""
    (tmp_path / "scripts").mkdir()
    for name in ("scripts/_bootstrap", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def bootstrap(project: Path, extras: str = "") -> list[str]:
    """Source the bootstrap as a script does; the pip installs it made."""
    log = project / "calls.log"
    log.write_text("")
    script = f"BOOTSTRAP_EXTRAS={extras}; source scripts/_bootstrap"
    subprocess.run(["bash", "-c", script], cwd=project, check=True, timeout=30,
                   capture_output=True)
    return [line for line in log.read_text().splitlines() if "install" in line and "-e" in line]


def test_serving_installs_the_project_without_the_test_extra(project):
    assert [line.split()[-1] for line in bootstrap(project)] == ["."]


def test_testing_after_serving_upgrades_the_venv_to_the_test_extra(project):
    bootstrap(project)
    assert [line.split()[-1] for line in bootstrap(project, "test")] == [".[test]"]


def test_the_bootstrap_installs_nothing_when_done_already(project):
    bootstrap(project, "test")
    assert bootstrap(project, "test") == [] and bootstrap(project) == []


@pytest.mark.parametrize(("script", "extras"), [("serve", None), ("test", "test"),
                                                ("bench", "test")])
def test_each_script_asks_for_the_extras_it_needs(script, extras):
    text = (ROOT / "scripts" / script).read_text()
    assert ("BOOTSTRAP_EXTRAS=test" in text) == (extras == "test")


def test_the_licence_file_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert "setuptools>=77" in project["build-system"]["requires"]  # SPDX strings need 77
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Copyright (c) 2026 The Circuit authors" in licence


def test_nothing_cites_a_file_that_is_not_in_the_repository():
    sources = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "circuit.toml.example",
               *ROOT.glob("docs/*.md"), *ROOT.glob("circuit/**/*.py"), *ROOT.glob("scripts/*")]
    missing = {f"{source.relative_to(ROOT)}: {cited}"
               for source in sources if source.is_file()
               for cited in CITED.findall(source.read_text())
               if not (ROOT / cited).exists()}
    assert missing == set()
