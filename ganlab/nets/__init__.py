"""The networks: the lecture's generator and discriminator, the projected discriminator on a frozen
ImageNet network, and the factory that composes a discriminator by its name in params.yaml.
Training and the metrics both build on this package and on nothing of each other."""
