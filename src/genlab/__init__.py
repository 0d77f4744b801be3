"""genlab: train, sample, evaluate and compare generative models of every major family.

    import genlab
    run = genlab.train("vae", data="digits", minutes=2)
    images = run.sample(64)
    scores = genlab.evaluate(run, n=1000)["scores"]  # FID, precision/recall, ... (see genlab.eval)
"""

__version__ = "0.1.0"

from .api import distill, load, models, sample, train  # noqa: E402

__all__ = ["train", "distill", "load", "sample", "evaluate", "models", "__version__"]


def __getattr__(name: str):
    # `evaluate` loads the evaluation package on first use, so `import genlab` stays fast
    if name == "evaluate":
        from .eval.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'genlab' has no attribute '{name}'")
