"""AutoAccel: training-free acceleration of diffusers pipelines under a quality budget.

Example:
    >>> from autoaccel import AutoAccel
    >>> pipe = AutoAccel.from_pretrained("autoaccel/fashion-flux", recipe="recipe.json")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AutoAccel", "Budget", "Recipe", "Workload", "__version__", "profile"]

if TYPE_CHECKING:
    from .auto import AutoAccel
    from .budget import Budget
    from .profiling import profile
    from .recipes import Recipe
    from .workload import Workload

_LAZY = {
    "AutoAccel": "autoaccel.auto",
    "Budget": "autoaccel.budget",
    "Recipe": "autoaccel.recipes",
    "Workload": "autoaccel.workload",
    "profile": "autoaccel.profiling",  # autoaccel.profile(pipe, recipe, workload) -> Measurement
}


def __getattr__(name: str) -> Any:
    # Heavy imports (torch, diffusers) happen on first use, not at `import autoaccel`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autoaccel' has no attribute {name!r}")
