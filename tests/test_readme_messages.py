"""The messages the README quotes are the ones the program prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.reliability.support import BIN, clean_environment

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_configuration_error_the_readme_quotes_is_what_uvicorn_and_serve_print(tmp_path):
    env = clean_environment(CIRCUIT_DAILY_USD_LIMIT="lots")
    direct = subprocess.run([sys.executable, "-c", "import circuit.main"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    served = subprocess.run([str(BIN / "circuit"), "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    for done in (direct, served):
        line = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and line in README, line


def test_the_quota_refusal_the_readme_quotes_has_the_programs_wording():
    from circuit.accounting.budget import _quota_exceeded
    from circuit.gateway.doors import CHAT, worded

    message = worded(_quota_exceeded(2_000, 615, 11), CHAT).message
    head = message.split(" The budget resets")[0]
    assert head in README, head


def test_the_unbounded_endpoint_refusal_the_readme_quotes_is_the_programs():
    from circuit.gateway.openai_surface import not_budgeted

    assert not_budgeted("files", 10_000_000).message in README
