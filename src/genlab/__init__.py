"""genlab: train, sample, evaluate and compare generative models of every major family.

    import genlab
    run = genlab.train("vae", data="digits", minutes=2)
    images = run.sample(64)
"""

__version__ = "0.1.0"

from .api import load, models, sample, train  # noqa: E402

__all__ = ["train", "load", "sample", "models", "__version__"]
