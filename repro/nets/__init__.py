"""Networks. Light to import: nothing here imports torchvision at module import time."""

from repro.nets.evaluator import DigitsClassifier, SceneFeatureNet
from repro.nets.unet import NoiseConditionalUNet, count_parameters

__all__ = ["DigitsClassifier", "NoiseConditionalUNet", "SceneFeatureNet", "count_parameters"]
