"""Name -> model class. The CLI, checkpoints and the contract test all go through here."""

from __future__ import annotations

import importlib

from .errors import UnknownNameError

# name -> "module:Class". Imported lazily so `import genlab` stays fast.
_MODELS: dict[str, str] = {
    "vae": "genlab.models.vae.vae:VAE",
    "beta-vae": "genlab.models.vae.beta_vae:BetaVAE",
    "gan": "genlab.models.gan.gan:GAN",
    "dcgan": "genlab.models.gan.dcgan:DCGAN",
    "wgan-gp": "genlab.models.gan.wgan_gp:WGANGP",
    "stylegan": "genlab.models.gan.stylegan:StyleGAN",
    "srgan": "genlab.models.gan.srgan:SRGAN",
    "cgan": "genlab.models.gan.cgan:CGAN", "sagan": "genlab.models.gan.sagan:SAGAN",
    "ddpm": "genlab.models.diffusion.ddpm:DDPM",
    "flow-matching": "genlab.models.diffusion.flow_matching:FlowMatching",
    "autoencoder": "genlab.models.vae.autoencoder:Autoencoder",
    "hvae": "genlab.models.vae.hvae:HVAE",
    "vqvae": "genlab.models.vae.vqvae:VQVAE", "vqvae-prior": "genlab.models.vae.vqvae_prior:VQVAEPrior",
    "latent-diffusion": "genlab.models.diffusion.latent_diffusion:LatentDiffusion",
    "noise-classifier": "genlab.models.diffusion.noise_classifier:NoiseClassifier",
    "pixelcnn": "genlab.models.autoregressive.pixelcnn:PixelCNN",
    "wavenet": "genlab.models.autoregressive.wavenet:WaveNet",
    "arima": "genlab.models.autoregressive.arima:ARIMA",
    "gpt": "genlab.models.autoregressive.gpt:GPT",
    "seq2seq": "genlab.models.autoregressive.seq2seq:Seq2Seq",
    "cyclegan": "genlab.models.gan.cyclegan:CycleGAN",
    "ddgan": "genlab.models.hybrid.ddgan:DDGAN",
    "progressive-distillation": "genlab.models.hybrid.progressive_distillation:ProgressiveDistillation",
}


def model_names() -> list[str]:
    return list(_MODELS)


def get_model_class(name: str):
    if name not in _MODELS:
        raise UnknownNameError("model", name, list(_MODELS))
    module, cls = _MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def register_model(name: str, target: str) -> None:
    """Register a model class given as "package.module:ClassName" (for plugins and later families)."""
    _MODELS[name] = target
