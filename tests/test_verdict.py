"""gan evaluate's plain-language verdict says what the numbers say, and says when it cannot."""

import json
import math

from ganlab.metrics.verdict import verdict

DEMO = {  # reports/metrics.json of a default run
    "swd_ratio": 3.254394,
    "ndb": 0.352,
    "ndb_floor": 0.032,
    "fd_ratio": 24.953562,
    "precision": 0.002,
    "recall": 0.013,
    "nn_ratio": 1.132752,
    "copy_share": 0.0,
    "fid": "unavailable",
}


def test_a_blurry_collapsed_demo_run_is_called_far_and_narrow_but_not_copying():
    far, copies, collapse = verdict(DEMO)
    assert "3.3x on the pixels" in far and "25x in ImageNet features" in far
    assert copies.startswith("copies: none found (0% near-copies; nn_ratio 1.13")
    assert "small part of your set" in collapse and "floor 0.03" in collapse


def test_a_copying_run_and_a_healthy_one():
    copying = {**DEMO, "copy_share": 0.4, "nn_ratio": 0.3, "ndb": 0.05, "recall": 0.6}
    _, copies, collapse = verdict(copying)
    assert copies.startswith("copies: 40% of the samples") and "evenly" in collapse


def test_missing_numbers_are_said_not_invented():
    tiny = {"swd_ratio": math.nan, "fd_ratio": None, "copy_share": math.nan, "nn_ratio": math.nan}
    assert verdict(tiny) == [
        "how far: not measurable (too few images for a floor)",
        "copies: not measurable (fewer than two training images)",
        "collapse: not measurable",
    ]
    assert json.dumps(verdict(DEMO))  # plain strings
