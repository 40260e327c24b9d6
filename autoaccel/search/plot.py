"""A dependency-free Pareto plot (Pillow): speedup against the budget's metric for every finished trial."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

W, H, PAD = 720, 480, 60


def pareto_png(
    points: Sequence[tuple[float, float, bool]],
    front: Sequence[tuple[float, float]],
    *,
    metric: str,
    bound: float | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Write a scatter plot: x = metric value, y = speedup; feasible points green, others grey; the front in blue.

    Args:
        points: ``(metric value, speedup, feasible)`` per trial.
        front: Pareto-optimal ``(metric value, speedup)`` pairs.
        bound: The budget's bound on the metric (a dashed red line), if any.
    """
    xs = [p[0] for p in points] + ([bound] if bound is not None else [])
    ys = [p[1] for p in points] + [1.0]
    x0, x1 = min(xs, default=0.0), max(xs, default=1.0)
    y0, y1 = min(ys + [1.0]), max(ys + [1.0])
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)

    def at(x: float, y: float) -> tuple[float, float]:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD), H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)

    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([PAD, PAD, W - PAD, H - PAD], outline="black")
    draw.text((PAD, 20), title or f"speedup vs {metric}", fill="black")
    draw.text((W // 2 - 20, H - 30), metric, fill="black")
    draw.text((8, PAD - 15), "speedup", fill="black")
    for value, label in ((y0, f"{y0:.2f}x"), (y1, f"{y1:.2f}x")):
        draw.text((8, at(x0, value)[1] - 6), label, fill="black")
    for value in (x0, x1):
        draw.text((at(value, y0)[0] - 15, H - PAD + 6), f"{value:.3g}", fill="black")
    if bound is not None:
        bx = at(bound, y0)[0]
        for y in range(PAD, H - PAD, 10):
            draw.line([bx, y, bx, y + 5], fill="red")
    for x, y, ok in points:
        cx, cy = at(x, y)
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill="seagreen" if ok else "lightgray", outline="black")
    ordered = sorted(front)
    for (ax, ay), (bx_, by) in zip(ordered, ordered[1:], strict=False):
        draw.line([*at(ax, ay), *at(bx_, by)], fill="royalblue", width=2)
    for x, y in ordered:
        cx, cy = at(x, y)
        draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline="royalblue", width=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
