"""Names that travel: class and folder names become MLflow keys, CSV columns and printed lines.
Each is mapped to a key within MLflow's limits (the full name kept in the manifest), printed with
its control characters escaped, and what could not work later is refused by ``prepare``."""

import json

import torch
from PIL import Image

from ganlab import layout
from ganlab.hooks import eval_metrics
from ganlab.io.tracking import TrainingRun
from ganlab.metrics.attributes import metric_names, new_net
from ganlab.metrics.scores import attribute_fidelity
from stages import prepare
from tests.conftest import tiny

LONG = ["a" * 240, "a" * 239 + "b"]  # legal folder names (a name may have 255 bytes), alike when cut


def class_folders(root, names, per_class=4):
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (32, 32), (40 * i, 10 * j, 200)).save(root / name / f"{j}.png")
    return root


def test_long_class_names_are_logged_to_mlflow_under_short_keys_mapped_in_the_manifest(workdir):
    params = tiny(prepare={"source": str(class_folders(workdir / "raw", LONG)), "image_size": 32})
    manifest = prepare.run(params)
    keys = manifest["classes"]["metric_keys"]
    assert sorted(keys.values()) == LONG and keys == json.loads(layout.MANIFEST.read_text())["classes"]["metric_keys"]
    assert list(keys) == metric_names(LONG) and all(len(k) <= 64 for k in keys)

    net = new_net({"class": LONG})
    scores = attribute_fidelity(net, torch.zeros(4, 3, 32, 32), torch.zeros(4, 3, 32, 32))
    logged, _ = eval_metrics(scores)
    assert {f"eval_detail/class_share/{k}" for k in keys} <= set(logged)
    TrainingRun("names", None, "long-names").log_metrics(logged, 0)  # raised "Metric name exceeds 250 characters"


def test_a_class_folder_named_with_a_newline_prints_escaped_and_forges_no_line(workdir, capsys):
    forged = "a\nerror: injected line"
    params = tiny(prepare={"source": str(class_folders(workdir / "raw", [forged, "b"])), "image_size": 32})
    manifest = prepare.run(params)
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("error")], out
    assert "classes (the first subfolder of each image): a\\nerror: injected line 4, b 4" in out
    assert manifest["classes"]["names"] == ["a\\nerror: injected line", "b"]
