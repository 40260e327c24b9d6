"""Small CLIP and T5 tokenizers built entirely in code (no download), for tiny test pipelines and reference models.

Both are instances of the real ``transformers`` classes, built from an in-code vocabulary, so they save with
``save_pretrained`` and reload with ``CLIPTokenizer.from_pretrained`` / ``T5TokenizerFast.from_pretrained`` (as
``DiffusionPipeline.from_pretrained`` does) to the same token ids. Every text tokenizes:

- CLIP: byte-level BPE like the real one (lowercased; 512 byte symbols, so no text is ever unknown) plus one merge
  chain per vocabulary word, so most vocabulary words are one token.
- T5: Unigram like the real one (case-sensitive); ``"▁word"`` pieces for vocabulary words and single printable ASCII
  characters as fallback; other characters become ``<unk>``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from functools import lru_cache

from transformers import CLIPTokenizer, T5TokenizerFast

__all__ = ["DEFAULT_WORDS", "clip_tokenizer", "t5_tokenizer"]

_DEFAULT_TEXT = """
a an the and or but of in on at to for with from by as is are was were be been being it its this that these those
i you he she we they me him her us them my your his our their there here what which who whom whose when where why how
all any both each few more most other some such no nor not only own same so than too very can will just should now
one two three four five six seven eight nine ten first second third last next new old good great big small large
little long short high low young early late right left best better bad hot cold warm cool dark light bright soft
hard heavy wet dry clean dirty beautiful pretty ugly happy sad calm quiet loud fast slow tall wide deep full empty
red orange yellow green blue purple pink brown black white gray grey gold silver colorful golden
man woman boy girl child children person people baby family friend king queen knight wizard robot astronaut
cat dog horse bird fish cow sheep lion tiger bear wolf fox rabbit mouse deer elephant monkey dragon owl eagle duck
tree trees flower flowers grass leaf leaves forest garden field mountain mountains hill river lake sea ocean beach
island desert snow rain cloud clouds sky sun moon star stars night day morning evening sunset sunrise storm fog wind
city town village street road bridge house home building castle tower church school room kitchen window door wall
floor roof garden park market shop cafe restaurant table chair bed lamp book books cup bottle glass plate bowl
car bus train boat ship plane bicycle truck rocket space planet earth world water fire ice stone rock sand wood
metal paper cloth food bread cake apple orange banana fruit coffee tea wine pizza
photo photograph picture painting drawing sketch portrait landscape illustration render art artwork style
realistic photorealistic detailed highly intricate sharp focus cinematic lighting digital oil watercolor anime
cartoon vintage modern futuristic fantasy abstract minimal epic dramatic studio background foreground close view
camera lens shot wide angle macro resolution quality masterpiece trending
sitting standing walking running flying swimming reading eating holding wearing looking playing sleeping dancing
riding smiling jumping
hat dress shirt coat shoes glasses crown armor helmet
front behind under over above below near inside outside between top bottom side middle center
make made see seen look like love go going come get take give find think know say said want use work play
have has had do does did
"""

DEFAULT_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_DEFAULT_TEXT.split()))
"""Default lowercase vocabulary (a few hundred common English and image-prompt words), deduplicated, in order."""

_CLIP_BOS, _CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
_T5_PAD, _T5_EOS, _T5_UNK = "<pad>", "</s>", "<unk>"
_EOW = "</w>"  # CLIP's end-of-word suffix
_SPACE = "\u2581"  # SentencePiece's "▁"


def _vocab_words(words: Sequence[str] | None) -> list[str]:
    """``DEFAULT_WORDS`` followed by the lowercase alphanumeric words of ``words``, deduplicated, in order."""
    extra: list[str] = []
    for text in words or ():
        extra.extend(w for w in "".join(c if c.isalnum() else " " for c in str(text).lower()).split())
    return list(dict.fromkeys([*DEFAULT_WORDS, *extra]))


@lru_cache(maxsize=1)
def _byte_chars() -> tuple[str, ...]:
    """GPT-2/CLIP byte-to-unicode table, in byte order (the symbols byte-level BPE works on)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@lru_cache(maxsize=8)
def _train_bpe(words: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Deterministic byte-level BPE training on ``words`` (each counted once) until every word is one symbol.

    The most frequent adjacent pair is merged first; ties go to the lexicographically smallest pair. Replaying the
    merges by rank (what the BPE model does) turns every training word back into a single token.
    """
    byte_chars = _byte_chars()
    seqs: list[list[str]] = []
    for word in words:
        symbols = [byte_chars[b] for b in word.encode("utf-8")]
        if symbols:
            symbols[-1] += _EOW
            seqs.append(symbols)
    counts: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}

    def count(idx: int, sign: int) -> list[tuple[str, str]]:
        seq = seqs[idx]
        pairs = list(zip(seq, seq[1:], strict=False))
        for pair in pairs:
            counts[pair] = counts.get(pair, 0) + sign
            if sign > 0:
                where.setdefault(pair, set()).add(idx)
            else:
                where[pair].discard(idx)
        return pairs

    for idx in range(len(seqs)):
        count(idx, 1)
    heap = [(-n, pair) for pair, n in counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg or neg == 0:
            continue  # stale heap entry
        merges.append(pair)
        merged = pair[0] + pair[1]
        touched: set[tuple[str, str]] = set()
        for idx in sorted(where[pair]):
            touched.update(count(idx, -1))
            seq, out, i = seqs[idx], [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[idx] = out
            touched.update(count(idx, 1))
        for other in sorted(touched):
            if counts.get(other, 0) > 0:
                heapq.heappush(heap, (-counts[other], other))
    return tuple(merges)


def clip_tokenizer(words: Sequence[str] | None = None, model_max_length: int = 77) -> CLIPTokenizer:
    """Build a small byte-level BPE CLIP tokenizer.

    Args:
        words: extra texts or words to add to the vocabulary (lowercased, split on non-alphanumerics), after
            `DEFAULT_WORDS`.
        model_max_length: default `max_length` (77 like the real CLIP tokenizer).

    Returns:
        A `transformers.CLIPTokenizer` (in transformers >= 5 the same class as `CLIPTokenizerFast`) with
        `<|startoftext|>` (bos), `<|endoftext|>` (eos, pad and unk), the last two ids of the vocabulary.

    Example:
        >>> tok = clip_tokenizer()
        >>> tok("a red cat", padding="max_length", max_length=8, return_tensors="pt").input_ids.shape
        torch.Size([1, 8])
    """
    byte_chars = _byte_chars()
    vocab = {symbol: i for i, symbol in enumerate([*byte_chars, *(c + _EOW for c in byte_chars)])}
    merges = _train_bpe(tuple(_vocab_words(words)))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab[_CLIP_BOS] = len(vocab)
    vocab[_CLIP_EOS] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=_CLIP_EOS,
        bos_token=_CLIP_BOS,
        eos_token=_CLIP_EOS,
        pad_token=_CLIP_EOS,
        model_max_length=model_max_length,
    )


def t5_tokenizer(words: Sequence[str] | None = None, model_max_length: int = 128) -> T5TokenizerFast:
    """Build a small Unigram T5 tokenizer.

    Args:
        words: extra texts or words to add to the vocabulary (lowercased, split on non-alphanumerics), after
            `DEFAULT_WORDS`.
        model_max_length: default `max_length`.

    Returns:
        A `transformers.T5TokenizerFast` (in transformers >= 5 the same class as `T5Tokenizer`) with ids
        `<pad>`=0, `</s>`=1, `<unk>`=2 like the real one, `</s>` appended to every sequence, and no sentinel tokens.

    Example:
        >>> tok = t5_tokenizer()
        >>> tok("a red cat").input_ids[-1] == tok.eos_token_id
        True
    """
    scores: dict[str, float] = {_T5_PAD: 0.0, _T5_EOS: 0.0, _T5_UNK: 0.0, _SPACE: -12.0}
    for word in _vocab_words(words):
        scores.setdefault(_SPACE + word, -4.0)
    for char in (chr(i) for i in range(ord("!"), ord("~") + 1)):  # printable ASCII fallback
        scores.setdefault(_SPACE + char, -9.0)
        scores.setdefault(char, -10.0)
    pieces = list(scores.items())
    return T5TokenizerFast(
        vocab=pieces,
        eos_token=_T5_EOS,
        unk_token=_T5_UNK,
        pad_token=_T5_PAD,
        extra_ids=0,
        model_max_length=model_max_length,
    )
