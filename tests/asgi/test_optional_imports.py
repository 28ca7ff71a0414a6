"""The web frameworks stay optional: the package and its webhook core import none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import phota_async

PACKAGE = Path(phota_async.__file__).parent
FRAMEWORKS = ("aiohttp", "fastapi", "starlette", "uvicorn")


def _runtime_imports(path: Path) -> set[str]:
    """Top-level package names imported when ``path`` is imported (``if TYPE_CHECKING:``
    blocks and imports inside functions left out)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_webhook_core_imports_no_web_framework() -> None:
    """phota_async/webhooks.py imports neither aiohttp nor Starlette, FastAPI or uvicorn at
    import time (the adapters do, on their own)."""
    assert _runtime_imports(PACKAGE / "webhooks.py") & set(FRAMEWORKS) == set()


def test_importing_the_package_imports_no_asgi_framework() -> None:
    """``import phota_async`` and ``import phota_async.webhooks`` load neither Starlette nor
    FastAPI nor uvicorn."""
    script = (
        "import sys, phota_async, phota_async.webhooks\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'uvicorn'}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"
