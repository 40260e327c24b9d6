"""Budgeted recipe search with Optuna: the space comes from the method registry, the budget is a hard constraint.

See docs/search.md. Example:
    >>> from autoaccel.search import search
    >>> result = search(pipe, "lpips<0.1", n_trials=40, db="sqlite:///recipes.db")
    >>> result.recipe.save("recipe.json")
"""

from .objective import Objective, clearly_over
from .runner import SearchError, SearchResult, search, split_workload, trials_to_fraction
from .space import Knob, SearchSpace, build_space

__all__ = [
    "Knob",
    "Objective",
    "SearchError",
    "SearchResult",
    "SearchSpace",
    "build_space",
    "clearly_over",
    "search",
    "split_workload",
    "trials_to_fraction",
]
