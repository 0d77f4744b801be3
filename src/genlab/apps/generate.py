"""Text generation from a language-model run, streamed as it is produced (`genlab generate`).

The model generates token ids (its `generate` iterator, with a KV cache); this layer owns what the model
does not know about: the run's tokenizer, the prompt's text, stop strings and streaming to a terminal.
A byte-level BPE token can end inside a UTF-8 character, so the text is decoded from the start each
time and only its new, complete part is streamed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..batch import PROMPT, SOURCE, SOURCE_MASK
from ..errors import ArgumentError
from ..precision import autocast, resolve_precision


@dataclass
class Generation:
    prompt: str
    text: str  # the generated continuation (without the prompt), cut before a stop string
    tokens: int  # generated tokens
    seconds: float
    stopped_by: str | None = None  # the stop string that ended it, if one did
    tokens_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens_per_second = self.tokens / self.seconds if self.seconds > 0 else float("inf")


def generate_text(run, prompt: str | None = None, *, max_tokens: int = 500, temperature: float | None = None,
                  top_k: int | None = None, top_p: float | None = None, stop: Sequence[str] = (), seed: int = 0,
                  stream: Callable[[str], None] | None = None, checkpoint: str = "latest", device: str | None = None,
                  precision: str = "auto", cache: bool = True) -> Generation:
    """Continue `prompt` (or start from the run's start token) by up to max_tokens tokens.

    Args:
        run: A run directory (or `genlab.runs.Run`) of a model that generates tokens (gpt).
        stop: Strings that end the generation as soon as the text contains one (it is cut before it).
        stream: Called with each new piece of text as soon as it is decoded (e.g. `print(end="")`).
        temperature, top_k, top_p: As the model's sampling options; None takes the run's defaults.

    Returns:
        A `Generation`: the text, its token count and the tokens/second.
    """
    from ..conditions import prompt_tokens
    from ..data.text import tokenizer_from_assets
    from ..runs import Run

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    if not hasattr(model, "generate") or PROMPT not in model.conditions:
        raise ArgumentError(f"`genlab generate` needs a language-model run (gpt); {run.path} is a {run.model_name} run. "
                            "Use `genlab sample` instead.")
    if max_tokens < 1:
        raise ArgumentError(f"--max-tokens must be at least 1, got {max_tokens}")
    if any(not s for s in stop):
        raise ArgumentError("a --stop string cannot be empty")
    tokenizer = tokenizer_from_assets(run.assets())
    ids = (prompt_tokens(run, prompt) if prompt else torch.tensor([[model.start_token]])).to(model.device)
    options = model.sample_options(temperature=temperature, top_k=top_k, top_p=top_p)
    options.pop("max_tokens")
    generator = torch.Generator(model.device).manual_seed(seed)
    new: list[int] = []
    shown, stopped_by = "", None
    t0 = time.perf_counter()
    with autocast(model.device, resolve_precision(precision, model.device, model)):
        for token in model.generate(ids, max_tokens, generator=generator, cache=cache, **options):
            new.append(int(token[0]))  # one host read per token: the tokenizer needs it anyway
            text = tokenizer.decode(new)
            hit = _first_stop(text, stop)
            if hit is not None:
                stopped_by, text = hit
            elif text.endswith("\ufffd"):  # a character still incomplete: wait for its next byte
                continue
            if stream and len(text) > len(shown) and text.startswith(shown):
                stream(text[len(shown):])
            shown = text
            if stopped_by is not None:
                break
    seconds = time.perf_counter() - t0
    if stopped_by is None:  # the budget ran out: all of it, but never half a character at the end
        text = tokenizer.decode(new).rstrip("\ufffd")
        if stream and len(text) > len(shown) and text.startswith(shown):
            stream(text[len(shown):])
        shown = text
    return Generation(prompt or "", shown, len(new), seconds, stopped_by)


def translate_text(run, sources: Sequence[str], *, decoding: str | None = None, beam_size: int | None = None,
                   temperature: float | None = None, seed: int = 0, checkpoint: str = "latest",
                   device: str | None = None, precision: str = "auto") -> list[str]:
    """The target text of each source line from a sequence-to-sequence run (seq2seq), e.g. "1234" ->
    "one thousand two hundred thirty-four" on number-words. `decoding`: greedy, beam or sample."""
    from ..data.text import tokenizer_from_assets
    from ..runs import Run

    run = run if isinstance(run, Run) else Run(run)
    model = run.load_model(checkpoint, device=device)
    if SOURCE not in model.conditions:
        raise ArgumentError(f"--input translates with a sequence-to-sequence run (seq2seq); {run.path} is a "
                            f"{run.model_name} run. Use --prompt to continue text instead.")
    if not sources:
        raise ArgumentError("give at least one --input text")
    tokenizer = tokenizer_from_assets(run.assets())
    try:
        ids = tokenizer.encode_batch(list(sources))
    except ArgumentError as e:
        raise ArgumentError(f"--input: {e}") from None
    length = model.source_length
    too_long = [s for s, i in zip(sources, ids) if len(i) > length]
    if too_long:
        raise ArgumentError(f"--input {too_long[0]!r} is {len(tokenizer.encode(too_long[0]))} tokens; this run reads "
                            f"at most {length}")
    source = torch.zeros(len(ids), length, dtype=torch.long)
    for row, i in enumerate(ids):
        source[row, : len(i)] = torch.tensor(i, dtype=torch.long)
    mask = torch.arange(length)[None] < torch.tensor([len(i) for i in ids])[:, None]
    generator = torch.Generator(model.device).manual_seed(seed)
    with autocast(model.device, resolve_precision(precision, model.device, model)):
        out = model.sample(len(ids), {SOURCE: source.to(model.device), SOURCE_MASK: mask.to(model.device)},
                           generator=generator, **model.sample_options(decoding=decoding, beam_size=beam_size,
                                                                      temperature=temperature))
    return [tokenizer.decode(row.tolist()) for row in out.cpu()]


def _first_stop(text: str, stop: Sequence[str]) -> tuple[str, str] | None:
    """(the stop string that occurs first, the text before it), or None."""
    hits = [(text.find(s), s) for s in stop if s in text]
    if not hits:
        return None
    at, s = min(hits)
    return s, text[:at]


def write_generation(generation: Generation, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generation.prompt + generation.text, encoding="utf-8")
    return path
