"""gan-lab: the lecture's DCGAN as a library; ``stages/`` holds one thin entry point per DVC stage.

Layout by role: ``data`` (images, demo faces, the dataset), ``training`` (networks, loss,
augmentation, EMA, the loop and its hooks, resumable state, distributed), ``metrics`` (the one
sampler and the one evaluator), ``render`` (grids, captions, plots, video), ``io`` (atomic
writes, checkpoints and the only module that talks to MLflow).
"""
