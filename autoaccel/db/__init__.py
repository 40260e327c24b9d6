"""The recipe database: models, hardware profiles, workloads, studies, trials and recipes (SQLite or PostgreSQL).

Example:
    >>> from autoaccel.db import RecipeDB
    >>> db = RecipeDB()  # AUTOACCEL_DB_URL, else ~/.local/share/autoaccel/recipes.db
    >>> match = db.best_recipe("org/model", None, hardware=profile, budget="p90(lpips)<0.15")
    >>> match.recipe, match.fallback  # fallback: "exact", "same_gpu" or "same_arch"
"""

from __future__ import annotations

from .engine import default_url, engine_for, normalize_url, redact_url, session_scope, user_data_dir
from .errors import DatabaseError, InvalidRecordError, NotFoundError, SchemaVersionError
from .facade import RecipeDB
from .matching import Fallback, Match, best_recipe, meets_budget
from .migrate import check_schema, current, downgrade, head_revision, schema_diff, upgrade
from .records import RecipeInfo, StudyInfo, TrialInfo, hardware_dict, workload_fingerprint

__all__ = [
    "DatabaseError",
    "Fallback",
    "InvalidRecordError",
    "Match",
    "NotFoundError",
    "RecipeDB",
    "RecipeInfo",
    "SchemaVersionError",
    "StudyInfo",
    "TrialInfo",
    "best_recipe",
    "check_schema",
    "current",
    "default_url",
    "downgrade",
    "engine_for",
    "hardware_dict",
    "head_revision",
    "meets_budget",
    "normalize_url",
    "redact_url",
    "schema_diff",
    "session_scope",
    "upgrade",
    "user_data_dir",
    "workload_fingerprint",
]
