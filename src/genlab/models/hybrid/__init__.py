"""Hybrids of two families: GAN and diffusion."""
