"""Helpers the runners of the 001 paper (BDD100K, mask-guided DDPM) share: settings, sampling, scoring."""
