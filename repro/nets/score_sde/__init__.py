"""The score SDE release's networks (yang-song/score_sde_pytorch): NCSN++ and DDPM++ with FIR
up/down-sampling, progressive branches, skip rescaling and both embeddings, named so that the
released CIFAR-10 checkpoints load with strict keys. The suite's own simplified NCSN++ is
repro.nets.ncsnpp."""
from repro.nets.score_sde.configs import CIFAR10_DDPMPP_CONTINUOUS, CIFAR10_NCSNPP_CONTINUOUS
from repro.nets.score_sde.model import ScoreSdeScoreNet
from repro.nets.score_sde.ncsnpp import ScoreSdeNetConfig

__all__ = ["CIFAR10_DDPMPP_CONTINUOUS", "CIFAR10_NCSNPP_CONTINUOUS", "ScoreSdeNetConfig", "ScoreSdeScoreNet"]
