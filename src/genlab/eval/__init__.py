"""Evaluation: quality, diversity and speed of generative models, measured honestly and comparably.

    genlab.evaluate("runs/ddpm-mnist", n=10_000)       # the entry point (evaluate.py)

evaluate.py     the orchestrator: sample (timed), measure, append to eval.json
features.py     the feature network: a small CNN trained on the data's real images, cached; inception.py
                loads a local Inception-v3 file instead
frechet.py      FID and KID
prdc.py         precision, recall, density, coverage (chunked, exact)
coverage.py     class histograms, entropy, KL, conditional accuracy; 8-Gaussians modes
memorization.py near-copies of training images
likelihood.py   held-out bits/dim, exact or bound
speed.py        samples/s and latency per batch, after warm-up
detect.py       a classifier two-sample test: can real and generated be told apart?
protocol.py     the locked protocol stored with every score; cached reference statistics
training.py     evaluation during training (--eval-every), same protocol, fewer samples
report.py       the trilemma report across runs (HTML + PNG)

Nothing is imported here, so `import genlab` stays fast: import the module you need.
"""
