"""The ``gan`` command: one subcommand per DVC stage, each reading params.yaml."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from stages.params import Params, ParamsError, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A reproducible DCGAN lab: prepare, train, sample, latent-study, make-video.")
ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="Params file.")


def _run(stage: Callable[[Params], object], params_path: Path) -> None:
    """User mistakes (bad params, bad input) end as one line on stderr and exit code 1."""
    try:
        stage(load_params(params_path))
    except (ParamsError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def prepare(params: Path = ParamsOption) -> None:
    """Images (or the demo faces) -> data/prepared/dataset.pt in [-1, 1], manifest, preview."""
    from stages import prepare as stage

    _run(stage.run, params)


@app.command()
def train(
    params: Path = ParamsOption,
    nproc: int = typer.Option(1, min=1, help="Processes (one per GPU, or CPU workers): runs itself under torchrun."),
) -> None:
    """Train the DCGAN; log to MLflow; write models/checkpoint.pt and reports/train/."""
    if nproc > 1:
        import subprocess

        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "stages.cli", "train", "--params", str(params)]
        raise typer.Exit(subprocess.call(cmd))
    from stages import train as stage

    _run(stage.run, params)


@app.command()
def sample(params: Path = ParamsOption) -> None:
    """Fixed-latent 8x8 grid and single images from the trained generator."""
    from stages import sample as stage

    _run(stage.run, params)


@app.command("latent-study")
def latent_study(params: Path = ParamsOption) -> None:
    """The homework's hand-made latent vectors, with an index page."""
    from stages import latent_study as stage

    _run(stage.run, params)


@app.command("make-video")
def make_video(params: Path = ParamsOption) -> None:
    """The training grids, in epoch order, as a video and an animated GIF."""
    from stages import video as stage

    _run(stage.run, params)


@app.command()
def attributes(params: Path = ParamsOption) -> None:
    """Train the demo faces' attribute classifier (for evaluation); other data sets skip it."""
    from stages import attributes as stage

    _run(stage.run, params)


@app.command()
def evaluate(params: Path = ParamsOption) -> None:
    """Attribute fidelity, memorisation, FID/KID -> reports/metrics.json and the MLflow run."""
    from stages import evaluate as stage

    _run(stage.run, params)


@app.command()
def bench(
    config: list[str] = typer.Option(None, "--config", "-c", help="lecture-128 and/or demo-64 (default: both)."),
    steps: int = typer.Option(4, help="Timed training steps per loop."),
    warmup: int = typer.Option(1, help="Untimed steps first."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Training images/s of this loop vs the lecture's notebook loop, TFLOP/s, sampling images/s."""
    from stages import bench as stage

    unknown = set(config or []) - set(stage.CONFIGS)
    if unknown:
        print(f"error: --config: unknown {sorted(unknown)}; choose from {sorted(stage.CONFIGS)}", file=sys.stderr)
        raise typer.Exit(1)
    stage.main(config, steps, warmup, device, json_output)


@app.command("demo-faces")
def demo_faces(out_dir: Path, count: int = 64, seed: int = 0, size: int = 128) -> None:
    """Write COUNT toy faces and their labels.csv into OUT_DIR (the demo data set, as files)."""
    from stages.demo_faces import write_demo_faces

    write_demo_faces(out_dir, count, seed, size)
    print(f"wrote {count} faces and labels.csv to {out_dir}")


if __name__ == "__main__":
    app()
