"""Running a bench script from a smoke test: its tools checked first, its output returned."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_tools(script: str, tools: tuple[str, ...], why: str) -> None:
    """Fail (not skip) when a tool the bench needs is not on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"bench/{script} {why}; missing from PATH: {', '.join(missing)}", pytrace=False)


async def run_bench(script: str, *args: str, within: float) -> str:
    """Run `bench/<script> args...` from the checkout's root; its output, after checking it exited 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / script), *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"bench/{script} {' '.join(args)} did not finish within {within:.0f} s") from None
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    return text
