"""Fashion-MNIST class names and the prompt paraphrases the reference model was trained on."""

from __future__ import annotations

from autoaccel.errors import AutoAccelError

__all__ = ["CLASS_NAMES", "PromptError", "all_prompts", "class_index", "class_prompts"]

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The ten Fashion-MNIST classes, in label order (label ``i`` is ``CLASS_NAMES[i]``)."""

# Noun phrases per class (with article); the first one gives each class's canonical prompt.
_NOUNS: tuple[tuple[str, ...], ...] = (
    ("a t-shirt", "a top", "a tee"),
    ("a pair of trousers", "trousers", "pants"),
    ("a pullover", "a sweater", "a jumper"),
    ("a dress", "a summer dress"),
    ("a coat", "a jacket", "a winter coat"),
    ("a sandal", "a summer sandal"),
    ("a shirt", "a button shirt"),
    ("a sneaker", "a running shoe", "a trainer"),
    ("a bag", "a handbag", "a purse"),
    ("an ankle boot", "a boot"),
)
_TEMPLATES: tuple[str, ...] = ("a photo of {}", "{}", "a picture of {}", "an image of {}")


class PromptError(AutoAccelError, ValueError):
    """An unknown Fashion-MNIST class label or name."""


def class_index(label: int | str) -> int:
    """Return the 0-based class index of a label (an int in ``0..9`` or a name from `CLASS_NAMES`, any case)."""
    if isinstance(label, int) and not isinstance(label, bool):
        if 0 <= label < len(CLASS_NAMES):
            return label
    elif isinstance(label, str):
        lowered = [name.lower() for name in CLASS_NAMES]
        if label.lower() in lowered:
            return lowered.index(label.lower())
    raise PromptError(f"unknown Fashion-MNIST class {label!r}; use an index 0..9 or one of {list(CLASS_NAMES)}")


def class_prompts(label: int | str) -> tuple[str, ...]:
    """Return the prompt paraphrases of one class; the first is the class's canonical prompt.

    Args:
        label: class index ``0..9`` or class name (e.g. ``"Sneaker"``).

    Example:
        >>> class_prompts("Sneaker")[0]
        'a photo of a sneaker'
    """
    nouns = _NOUNS[class_index(label)]
    return tuple(template.format(noun) for noun in nouns for template in _TEMPLATES)


def all_prompts() -> list[tuple[str, int]]:
    """Return every training prompt with its class index, classes in label order."""
    return [(prompt, i) for i in range(len(CLASS_NAMES)) for prompt in class_prompts(i)]
