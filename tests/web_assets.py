"""The web clients' vendor files (clients/web/node_modules) for tests that serve or open the real pages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB_DIR = Path(__file__).resolve().parents[1] / "clients" / "web"


def ensure_web_assets() -> Path:
    """clients/web, with its node_modules installed from package-lock.json (`npm ci`, as `make web` does) when
    missing. Fails (does not skip) when npm is not on PATH or the install fails."""
    if (WEB_DIR / "node_modules" / ".package-lock.json").is_file():
        return WEB_DIR
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("the web clients need their vendor files from clients/web/package-lock.json, and npm is not on "
                    "PATH: run `make web` (or `apt-get install nodejs npm`)", pytrace=False)
    try:
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB_DIR,
                              capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm ci` in {WEB_DIR} took longer than 300 seconds", pytrace=False)
    if proc.returncode != 0 or not (WEB_DIR / "node_modules" / ".package-lock.json").is_file():
        pytest.fail(f"`npm ci` in {WEB_DIR} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}", pytrace=False)
    return WEB_DIR
