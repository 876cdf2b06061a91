"""Score a file of samples made elsewhere (a peer's) with this project's panel, against the prepared images.

    python scripts/score_samples.py data/prepared/dataset.pt SAMPLES.pt     (SAMPLES.pt: {"images": N x 3 x S x S in [-1, 1]})

Prints one JSON line: the numbers `gan evaluate` reports (fd_ratio, swd, ndb with their floors,
precision, recall, copying), computed by the same code.
"""

import json
import sys

import torch

from ganlab.data.dataset import load_images
from ganlab.metrics.evaluator import Reference, feature_scores, pixel_scores
from ganlab.metrics.features import FeatureNet, features
from ganlab.metrics.scores import memorisation

real = load_images(sys.argv[1])["images"].float()
fake = torch.load(sys.argv[2], weights_only=True)["images"].float().clamp(-1, 1)
if fake.shape[1:] != real.shape[1:]:
    sys.exit(f"error: {sys.argv[2]}: images of {tuple(fake.shape[1:])}, the data set's are {tuple(real.shape[1:])}")
net = FeatureNet()
ref = Reference(features(net, real))
metrics, _ = feature_scores(features(net, fake), ref)
metrics.update(pixel_scores(fake, real, ref))
metrics.update(memorisation(fake, real)[0])
print(json.dumps({k: round(v, 5) for k, v in metrics.items()}))
