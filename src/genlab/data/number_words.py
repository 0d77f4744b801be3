"""`number-words`: a generated sequence-to-sequence task, numerals to English words.

"1234" -> "one thousand two hundred thirty-four". Numbers of 1 to `max_digits` digits (default 6, at
most 9), as many of each digit count, drawn from a fixed seed: every run sees the same pairs and no
file is needed. It needs what translation needs (reordering, a target three to eight times longer than its
source, agreement across long spans: "... thousand" only when a thousands group is non-zero) and is
checkable exactly, which makes it the task for tests, the demo and the seq2seq benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import from_dict
from ..errors import ArgumentError
from .base import DatasetInfo, LoadOptions, register
from .sequences import SPECIALS, SequencePairs
from .text import CharTokenizer

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = [(1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand")]
MAX_DIGITS = 9


def number_words(n: int) -> str:
    """English words for 0 <= n < 10**12, American style without "and": 1234 -> one thousand two hundred thirty-four."""
    if not 0 <= n < 10**12:
        raise ArgumentError(f"number_words takes 0 to 999,999,999,999, got {n}")
    if n == 0:
        return "zero"
    words = []
    for scale, name in SCALES:
        if n >= scale:
            words += [_below_thousand(n // scale), name]
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else ""))
    elif n:
        words.append(ONES[n])
    return " ".join(words)


@dataclass(frozen=True)
class NumberWordsOptions:
    pairs: int = 20000
    max_digits: int = 6  # up to 999,999: targets of up to 65 characters keep training quick on a CPU


def load_number_words(name: str, opts: LoadOptions) -> SequencePairs:
    o = from_dict(NumberWordsOptions, opts.options, "number-words options")
    if o.pairs < 2 or not 1 <= o.max_digits <= MAX_DIGITS:
        raise ArgumentError(f"number-words needs pairs >= 2 and max_digits in 1..{MAX_DIGITS}")
    rng = np.random.default_rng(20240601)  # fixed: the task, not the run's seed, decides the pairs
    digits = rng.integers(1, o.max_digits + 1, o.pairs)
    low = np.where(digits == 1, 0, 10 ** (digits - 1))
    numbers = (low + rng.random(o.pairs) * (10**digits - low)).astype(np.int64)
    sources = [str(int(v)) for v in numbers]
    targets = [number_words(int(v)) for v in numbers]
    # every character the task can produce, so any number (not only those drawn) can be translated
    alphabet = "0123456789 -" + "".join(sorted(set("".join(ONES + TENS + [s for _, s in SCALES] + ["hundred"]))))
    tokenizer = CharTokenizer(alphabet, SPECIALS)
    src, tgt = tokenizer.encode_batch(sources), tokenizer.encode_batch(targets)
    source_len = o.max_digits
    # room for the longest number of max_digits digits: every three-digit group at its longest
    longest_group = max(range(1, 1000), key=lambda k: len(_below_thousand(k)))
    longest = int((str(longest_group).zfill(3) * 3)[-o.max_digits:])
    target_len = len(number_words(longest)) + 2  # with BOS and EOS
    notes = [f"{o.pairs} generated pairs, numbers of 1 to {o.max_digits} digits in equal shares; "
             f"source padded to {source_len}, target to {target_len}"]
    return SequencePairs("number-words", src, tgt, tokenizer, source_len, target_len, opts.val_fraction, opts.seed,
                         source="generated", notes=notes)


register(DatasetInfo("number-words", "numerals to English words (\"1234\" -> \"one thousand two hundred thirty-four\")",
                     "generated", "T", "none", load_number_words,
                     options={"pairs": "number of pairs (default 20000)",
                              "max_digits": f"digits of the largest numbers, 1 to {MAX_DIGITS} (default 6)"}))
