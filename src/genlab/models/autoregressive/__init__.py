"""Autoregressive models: one element at a time, exact likelihoods (GPT, PixelCNN, WaveNet, seq2seq, ARIMA)."""
