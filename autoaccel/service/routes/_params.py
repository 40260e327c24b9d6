"""Query and path parameter types shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip.")]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Fingerprint = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$", description="A workload fingerprint (sha256 hex).")]
