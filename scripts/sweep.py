"""One row of a defaults sweep on a real image set: train with overrides, report the
distance over time.

    python scripts/sweep.py OUT data/benchmarks/icons-200 NAME [key=value ...]
    python scripts/sweep.py --plot OUT curves.png [NAME ...]     # fd_ratio over kimg, per set

Makes OUT/NAME/SET/ holding the shipped params.yaml with ``prepare.source`` set to SET and each
``key=value`` applied (values parsed as YAML: ``train.lr=0.0005``, ``train.diffaugment=[]``),
prepares the set once per OUT, its files and its prepare params (``gan prepare``, then ``gan
attributes`` for the demo's labels or class subfolders; copied into each run), runs ``gan train``
and appends one JSON line to OUT/results.jsonl: the fd_ratio of every in-training evaluation,
the best one, the wall time and the training's images/s. Lengths are in kimg, so two runs sharing this busy CPU still
compare: the wall times are the ones to re-measure alone. When OUT/code holds a copy of the
code (``git archive HEAD ganlab stages | tar -x -C OUT/code``; its commit in OUT/code/COMMIT), the
runs import it: editing the working tree while a sweep runs does not change its runs.

Why not ``dvc exp run --queue -S ...``: a queued experiment runs in a copy of the git and DVC
workspace, and the real sets are in neither (data/benchmarks/ is gitignored: their images are
not ours to redistribute), so its ``prepare`` would not find them; a queued experiment also runs
every stage after ``train`` (sample, video, evaluate), which a sweep row does not need. A sweep
that only changes params on a set inside the workspace (the demo) is ``dvc exp run --queue``
plus ``dvc queue start -j 2`` and ``dvc exp show``, with nothing from here.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _prepare(prepared: Path, params: Path, env: dict | None) -> None:
    if prepared.exists():
        return
    tmp = prepared.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(params, tmp / "params.yaml")
    # then the classifier of the set's labels (the demo's attributes, class subfolders), as `dvc repro`
    # fits it: the in-training evaluation then reports the attribute mix (attr_tv_mean)
    for stage in ("prepare", "attributes"):
        done = subprocess.run(["gan", stage], cwd=tmp, env=env)
        if done.returncode != 0:  # its own error line is above
            sys.exit(f"error: `gan {stage}` of {params.parent.name} failed (exit code {done.returncode}); see above")
    tmp.rename(prepared)


def _data_key(params: dict, src: Path) -> str:
    """What the prepared data follows: the prepare params (source, crop, background, size...),
    the device (``gan attributes`` fits on it) and every file of the set, path and bytes. Cached by
    the folder's name alone, a second set of the same name trained on the first one's images, and
    a crop or background override was ignored, silently."""
    h = hashlib.sha256(json.dumps([params["prepare"], params.get("device")], sort_keys=True, default=str).encode())
    if src.is_dir() and params["prepare"]["source"] != "demo":
        for dirpath, dirnames, filenames in os.walk(src):  # as prepare lists them: folder links not followed
            dirnames.sort()
            for f in sorted(filenames):
                path = Path(dirpath) / f
                h.update(os.fsencode(path.relative_to(src)) + b"\0")
                try:
                    if stat.S_ISREG(path.stat().st_mode):  # a FIFO would block; prepare skips it anyway
                        with open(path, "rb") as data:
                            for block in iter(lambda data=data: data.read(1 << 20), b""):
                                h.update(block)
                except OSError as e:
                    h.update(f"unreadable: {e.errno}".encode())
                h.update(b"\0")
    return h.hexdigest()[:16]


def plain_name(name: str, what: str) -> str:
    """``name`` if it names one folder inside OUT: the run folder under it is deleted and made
    again, so ``../x`` or an absolute path would delete outside OUT."""
    if name in ("", ".", "..") or "/" in name or os.sep in name or Path(name).is_absolute():
        sys.exit(
            f"error: {what} {name!r} is not a plain name (one folder name: no '/', not '.' or '..'); it names the run's folder inside OUT"
        )
    return name


def _append_no_link(path: Path):
    """Files at a fixed name in OUT are opened without following a link: one planted there would
    send the write to whatever file it names."""
    try:
        return os.fdopen(
            os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666), "a"
        )
    except OSError as e:
        if e.errno == errno.ELOOP:
            sys.exit(
                f"error: {path}: is a symbolic link; sweep.py makes this file itself: remove the link, then run again"
            )
        raise


USAGE = "usage:\n" + "\n".join(line for line in __doc__.splitlines() if line.lstrip().startswith("python scripts/"))


def _override(params: dict, item: str) -> None:
    """``key=value`` applied to ``params``; a key whose sections are not in params.yaml is one line
    (the last part may be new: ``gan train`` names a misspelt one, in train.log)."""
    key, eq, value = item.partition("=")
    if not eq or not key:
        sys.exit(f"error: override {item!r}: not key=value (e.g. train.lr=0.0005)")
    *path, last = key.split(".")
    node = params
    for i, part in enumerate(path):
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            sys.exit(f"error: override {item!r}: params.yaml has no section {'.'.join(path[: i + 1])}")
    try:
        node[last] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        sys.exit(f"error: override {item!r}: its value is not YAML ({' '.join(str(e).split())[:200]})")


def main(out: str, image_set: str, name: str, *overrides: str) -> None:
    plain_name(name, "NAME")
    out_dir, src = Path(out).resolve(), Path(image_set).resolve()
    plain_name(src.name, "SET's folder name")
    if image_set != "demo" and not src.is_dir():
        sys.exit(f"error: SET {image_set!r}: no such folder (a folder of images, or demo)")
    code = out_dir / "code"
    env = {**os.environ, "PYTHONPATH": str(code)} if code.is_dir() else None
    params = yaml.safe_load(((code if (code / "params.yaml").is_file() else ROOT) / "params.yaml").read_text())
    params["prepare"]["source"] = "demo" if image_set == "demo" else str(src)  # the built-in faces by name
    for item in overrides:
        _override(params, item)
    run = out_dir / name / src.name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    prepared = out_dir / "_prepared" / f"{src.name[:100]}-{params['prepare']['image_size']}-{_data_key(params, src)}"
    prepared.parent.mkdir(parents=True, exist_ok=True)
    with _append_no_link(out_dir / "_prepared" / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sweeps starting on one set prepare it once
        _prepare(prepared, run / "params.yaml", env)
    shutil.copytree(prepared / "data", run / "data")
    if (prepared / "models").is_dir():
        shutil.copytree(prepared / "models", run / "models")

    start = time.perf_counter()
    with open(run / "train.log", "w") as log:
        done = subprocess.run(["gan", "train"], cwd=run, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    evals = (
        list(csv.DictReader(open(run / "reports/train/eval_history.csv")))
        if (run / "reports/train/eval_history.csv").exists()
        else []
    )
    timing = (
        list(csv.DictReader(open(run / "reports/train/timing.csv")))
        if (run / "reports/train/timing.csv").exists()
        else []
    )
    ratios = [(round(float(r["kimg"]), 1), round(float(r["fd_ratio"]), 2)) for r in evals if r["fd_ratio"]]
    row = {
        "name": name,
        "set": src.name,
        "code": (code / "COMMIT").read_text().strip() if (code / "COMMIT").is_file() else None,
        "overrides": list(overrides),
        "rc": done.returncode,
        "fd_ratio": ratios,
        "best": min((r for _, r in ratios), default=None),
        "floor": round(float(evals[0]["fd_floor"]), 1) if evals and evals[0]["fd_floor"] else None,
        "precision": float(evals[-1]["precision"]) if evals and evals[-1]["precision"] else None,
        "recall": float(evals[-1]["recall"]) if evals and evals[-1]["recall"] else None,
        "wall_s": round(seconds),
        "train_img_s": round(float(timing[-1]["kimg"]) * 1000 / float(timing[-1]["seconds"])) if timing else None,
    }
    with _append_no_link(out_dir / "results.jsonl") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


def plot(out: str, png: str, *names: str) -> None:
    """fd_ratio over kimg of the runs in OUT/results.jsonl (those named, or all), one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = Path(out) / "results.jsonl"
    try:
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        sys.exit(f"error: {results}: {getattr(e, 'strerror', None) or e}")
    rows = [r for r in rows if r.get("fd_ratio") and (not names or r.get("name") in names)]
    if not rows:
        sys.exit(
            f"error: {results}: no run {'named ' + ', '.join(names) + ' ' if names else ''}with an fd_ratio to plot"
        )
    families: dict[str, list[str]] = {}  # icons-20, icons-200 ... in a row per family, by size
    for name in sorted(
        {r["set"] for r in rows},
        key=lambda n: (n.rsplit("-", 1)[0], int(n.rsplit("-", 1)[-1]) if n[-1].isdigit() else 0),
    ):
        families.setdefault(name.rsplit("-", 1)[0], []).append(name)
    cols = max(len(v) for v in families.values())
    fig, axes = plt.subplots(len(families), cols, figsize=(5 * cols, 3.8 * len(families)), squeeze=False)
    colours = {n: f"C{i}" for i, n in enumerate(dict.fromkeys(r["name"] for r in rows))}
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, name in [(axes[i][j], n) for i, names in enumerate(families.values()) for j, n in enumerate(names)]:
        ax.set_visible(True)
        for r in rows:
            if r["set"] == name:
                ax.plot(*zip(*r["fd_ratio"]), marker=".", label=r["name"], color=colours[r["name"]])
        ax.axhline(2, color="grey", linestyle="--", linewidth=1)
        ax.set(title=f"{name}: fd over its real-vs-real floor", xlabel="kimg", ylabel="fd_ratio (1 = the floor)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)


def cli(argv: list[str]) -> None:
    """No or too few arguments: the usage, exit code 2 (they were an IndexError or a TypeError)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
    elif argv[:1] == ["--plot"] and len(argv) >= 3:
        plot(*argv[1:])
    elif argv[:1] != ["--plot"] and len(argv) >= 3:
        main(*argv)
    else:
        print(USAGE, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli(sys.argv[1:])
