"""`uvicorn circuit.main:app` loads this: the gateway configured from every source."""

from __future__ import annotations

import sys

from circuit.config import ConfigError
from circuit.gateway.app import create_app
from circuit.supervision import startup_failed

try:
    app = create_app()
except ConfigError as exc:
    # One clear line and a non-zero exit, never a traceback, and no supervisor left behind.
    print(f"circuit: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(startup_failed()) from None
