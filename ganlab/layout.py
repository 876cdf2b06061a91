"""Where every stage reads and writes, relative to the project root; dvc.yaml names the same paths."""

import re
from pathlib import Path

RAW = Path("data/raw")  # put your own images here; DVC tracks this folder as prepare's input
PREPARED = Path("data/prepared")
DEMO_IMAGES = PREPARED / "demo"
DATASET = PREPARED / "dataset.pt"
MANIFEST = PREPARED / "manifest.json"
PREVIEW = PREPARED / "preview.png"

CHECKPOINT = Path("models/checkpoint.pt")
TRAIN_LOCK = Path("models/.train.lock")  # held by a running `gan train`
RUN_INFO = Path("models/run.json")  # the MLflow run and wall time beside the checkpoint: not an output

TRAIN_REPORTS = Path("reports/train")
GRIDS = TRAIN_REPORTS / "grids"
HISTORY = TRAIN_REPORTS / "history.csv"
TIMING = TRAIN_REPORTS / "timing.csv"  # images/s and wall time: not an output (different on every run)
EVAL_HISTORY = TRAIN_REPORTS / "eval_history.csv"
GRID_FILE = re.compile(r"images_(\d{9})\.png$")  # a training grid, named by the real images shown to D before it


def grid_file(images: int) -> Path:
    return GRIDS / f"images_{images:09d}.png"


SAMPLES = Path("reports/samples")
LATENT_STUDY = Path("reports/latent_study")
VIDEO = Path("reports/video")

ATTRIBUTES = Path("models/attributes.pt")
FEATURES = Path(
    "models/features.pt"
)  # the training images in ImageNet features: what fd, kid, precision and recall compare against
ATTRIBUTES_REPORT = Path("reports/attributes.json")
METRICS = Path("reports/metrics.json")
EVALUATE = Path("reports/evaluate")
# the folders that hold DVC's cached outputs (and the .gitignore DVC writes beside each): see dvc_output_folders_inside
DVC_OUTPUT_FOLDERS = (PREPARED.parent, CHECKPOINT.parent, SAMPLES.parent, GRIDS.parent)
