"""Additive score/direction terms (segmentation, classifier and discriminator guidance) and
epsilon scaling. Import the modules by their full path, e.g.
`from repro.guidance.discriminator import DiscriminatorGuidance`."""
