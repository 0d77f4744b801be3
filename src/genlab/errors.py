"""Errors a user can act on: each message names the problem and the fix."""


class GenlabError(Exception):
    """Base class for every error genlab raises on purpose (the CLI prints these without a traceback)."""


class UnknownNameError(GenlabError, KeyError):
    def __init__(self, kind: str, name: str, valid: list[str]):
        super().__init__(f"unknown {kind} '{name}'. Valid {kind}s: {', '.join(sorted(valid))}.")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ArgumentError(GenlabError, ValueError):
    """An argument that cannot work as given: class labels out of range, sampler steps, batch size."""


class DataError(GenlabError):
    """Missing, truncated or malformed data files."""


class CheckpointError(GenlabError):
    """A checkpoint that is missing, corrupt, truncated or from another model."""


class RunExistsError(GenlabError):
    """An output run directory that already holds a run."""


class RunLockedError(GenlabError):
    """A run directory that another process is using (training, resuming); see genlab.lock."""


class TrainingDiverged(GenlabError):
    """The loss became NaN or infinite."""

    def __init__(self, step: int, losses: dict, checkpoint: str | None):
        kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(
            f"loss became non-finite at step {step} ({losses}); training stopped and {kept}. "
            "Lower the learning rate (--lr) or the gradient clip (--set train.grad_clip=...), then resume."
        )
        self.step = step


class EvalInputError(GenlabError):
    """Samples, data or a feature network that cannot be evaluated together (shape, channels, NaN, empty)."""
