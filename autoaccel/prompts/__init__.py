"""Prompt sets: the built-in ones shipped with AutoAccel, and user files (``.txt`` or ``.jsonl``).

Built-in sets (see `available`):

- ``default``: 76 prompts written for this project, over subjects, styles, text rendering, counting, composition,
  lighting and scenes.
- ``calibration``: 8 prompts of ``default`` (one or two per section) for quick checks and search calibration.
- ``fashion``: one canonical prompt per Fashion-MNIST class (``"a photo of a sneaker"``, ...), for the reference
  model (`autoaccel.reference`).

User files: ``.txt`` has one prompt per line (blank lines and lines starting with ``#`` are ignored); ``.jsonl`` has
one JSON object ``{"prompt": "..."}`` per line (blank lines ignored, other keys ignored). Errors name the line.

Example:
    >>> from autoaccel import prompts
    >>> len(prompts.load("default")), prompts.load("calibration")[0]
    (76, 'a close-up photo of a red fox sitting in fresh snow, looking at the camera')
    >>> prompts.load("my_prompts.txt")  # a user file
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from autoaccel.errors import AutoAccelError

__all__ = ["MAX_PROMPT_CHARS", "PromptFileError", "available", "load", "parse_jsonl", "parse_txt"]

MAX_PROMPT_CHARS = 4096
"""Longest accepted prompt (characters); longer lines are almost certainly not prompts."""

_FILE_SETS = ("default", "calibration")


class PromptFileError(AutoAccelError, ValueError):
    """A prompt set name is unknown or a prompt file is malformed; the message names the file and line."""


def available() -> list[str]:
    """Names of the built-in prompt sets."""
    return [*_FILE_SETS, "fashion"]


def load(name_or_path: str | Path) -> list[str]:
    """Load a built-in prompt set by name, or a user ``.txt`` / ``.jsonl`` file by path.

    Args:
        name_or_path: A name from `available` (a built-in set wins over a file of the same name in the current
            folder), or the path of a ``.txt`` or ``.jsonl`` file.

    Returns:
        The prompts in file order (at least one).

    Raises:
        PromptFileError: Unknown name, missing or unreadable file, unsupported suffix, a malformed line (the message
            says ``path:line``), or no prompts at all.
    """
    if isinstance(name_or_path, str) and name_or_path in _FILE_SETS:
        text = resources.files(__name__).joinpath(f"{name_or_path}.txt").read_text(encoding="utf-8")
        return parse_txt(text, source=f"<built-in {name_or_path}>")
    if name_or_path == "fashion":
        return _fashion()
    path = Path(name_or_path)
    if not path.is_file():
        raise PromptFileError(
            f"{str(name_or_path)!r} is neither a built-in prompt set ({', '.join(available())}) nor an existing file"
        )
    parsers = {".txt": parse_txt, ".jsonl": parse_jsonl}
    parser = parsers.get(path.suffix.lower())
    if parser is None:
        raise PromptFileError(f"{path}: unsupported prompt file type {path.suffix!r}; use .txt or .jsonl")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PromptFileError(f"{path}: cannot read prompt file: {e}") from None
    return parser(text, source=str(path))


def parse_txt(text: str, *, source: str = "<string>") -> list[str]:
    """Prompts from text with one prompt per line; blank lines and ``#`` comment lines are skipped."""
    prompts = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            prompts.append(_check(prompt, source, lineno))
    return _nonempty(prompts, source)


def parse_jsonl(text: str, *, source: str = "<string>") -> list[str]:
    """Prompts from JSON Lines, one ``{"prompt": "..."}`` object per line; blank lines are skipped."""
    prompts = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise PromptFileError(f"{source}:{lineno}: not valid JSON: {e}") from None
        if not isinstance(record, dict) or "prompt" not in record:
            raise PromptFileError(f'{source}:{lineno}: expected an object with a "prompt" key, got {line.strip()!r}')
        prompt = record["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f'{source}:{lineno}: "prompt" must be a non-empty string, got {prompt!r}')
        prompts.append(_check(prompt.strip(), source, lineno))
    return _nonempty(prompts, source)


def _check(prompt: str, source: str, lineno: int) -> str:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptFileError(f"{source}:{lineno}: prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


def _nonempty(prompts: list[str], source: str) -> list[str]:
    if not prompts:
        raise PromptFileError(f"{source}: no prompts (every line is blank or a comment)")
    return prompts


def _fashion() -> list[str]:
    from autoaccel.reference.prompts import CLASS_NAMES, class_prompts

    return [class_prompts(i)[0] for i in range(len(CLASS_NAMES))]
