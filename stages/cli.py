"""The ``gan`` command: one subcommand per DVC stage (each reads params.yaml), plus tools.

Each command imports its stage's module when it runs: every DVC stage is a process of its own,
and importing all eight stages and the benchmark made each of them 2.3 s slower to start."""

from __future__ import annotations

import os
import signal
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ganlab.data.demo_faces import write_demo_faces
from ganlab.errors import Terminated, UserError, printable
from ganlab.io.atomic import dvc_output_folders_inside
from ganlab.params import ModelParams, Params, load_params
from ganlab.render import dvc_plots
from ganlab.training import distributed

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A reproducible DCGAN lab: prepare, attributes, features, train, sample, latent-study, make-video, evaluate; bench, demo-faces, plots.",
)
ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="Params file.")


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` (a Ctrl-C); once the run is closed, the process dies of SIGTERM after all,
    so that whatever sent it sees what it expects (systemd counts a death by SIGTERM as a clean stop, an exit
    code 143 as a failure). Once: a second SIGTERM while the run closes (a scheduler signals every process of
    a job, and the launcher of ``--nproc`` its workers too) does not cut its closing short; SIGKILL still does."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, lambda *_: None)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Terminated:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise typer.Exit(128 + signal.SIGTERM) from None  # as a shell reports it, should the signal come late
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(stage: Callable[[Params], object], params_path: Path) -> None:
    """User mistakes (bad params, bad input, a diverged run) end as one line on stderr and exit code 1."""
    try:
        if os.environ.get("DVC_ROOT"):  # set by `dvc repro` and `dvc exp run` for the stage's command
            dvc_output_folders_inside()
        stage(load_params(params_path))
    except (UserError, FloatingPointError) as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)  # a name in it may hold a newline
        raise typer.Exit(1) from None


@app.command()
def prepare(params: Path = ParamsOption) -> None:
    """Images (or the demo faces) -> data/prepared/dataset.pt in [-1, 1], manifest, preview."""
    from stages.prepare import run

    _run(run, params)


@app.command()
def attributes(params: Path = ParamsOption) -> None:
    """Train the demo faces' attribute classifier (for evaluation); other data sets skip it."""
    from stages.attributes import run

    _run(run, params)


@app.command()
def features(params: Path = ParamsOption) -> None:
    """The training images in ImageNet features (EfficientNet-Lite1): what fd, kid, precision and recall compare against."""
    from stages.features import run

    _run(run, params)


@app.command()
def train(
    params: Path = ParamsOption,
    nproc: int = typer.Option(
        1, min=1, help="Processes (one per GPU, or CPU workers) on this machine, talking over loopback only."
    ),
    extend: bool = typer.Option(
        None,
        "--extend/--fresh",
        help="Over train.extend: continue a finished run whose length or train.stop grew (and say so when it has "
        "nothing left to train), or retrain it from zero.",
        show_default=False,
    ),
) -> None:
    """Train the DCGAN; log to MLflow; write models/checkpoint.pt and reports/train/."""
    from stages.train import check_processes, run

    with _sigterm_as_ctrl_c():
        if nproc > 1:
            _run(lambda p: check_processes(p, nproc), params)
            raise typer.Exit(
                distributed.launch(
                    nproc,
                    [
                        sys.executable,
                        "-m",
                        "stages.cli",
                        "train",
                        "--params",
                        str(params),
                        *({True: ["--extend"], False: ["--fresh"]}.get(extend, [])),
                    ],
                )
            )
        _run(lambda p: run(p, extend=extend), params)


@app.command()
def sample(params: Path = ParamsOption) -> None:
    """Fixed-latent 8x8 grid and single images from the trained generator; logs it as the MLflow model."""
    from stages.sample import run

    _run(run, params)


@app.command("latent-study")
def latent_study(params: Path = ParamsOption) -> None:
    """The homework's hand-made latent vectors, with an index page."""
    from stages.latent_study import run

    _run(run, params)


@app.command("make-video")
def make_video(params: Path = ParamsOption) -> None:
    """The training grids, in training order, as a video and an animated GIF."""
    from stages.make_video import run

    _run(run, params)


@app.command()
def evaluate(params: Path = ParamsOption) -> None:
    """Attribute fidelity, memorisation, FID/KID -> reports/metrics.json and the MLflow run."""
    from stages.evaluate import run

    _run(run, params)


@app.command()
def bench(
    config: list[str] = typer.Option(
        None, "--config", "-c", help="lecture-128 and/or demo-64 (default: both on CUDA, demo-64 on a CPU)."
    ),
    trials: int = typer.Option(5, min=1, help="Interleaved timed trials per loop."),
    steps: int = typer.Option(8, min=1, help="Training steps per trial."),
    size: list[int] = typer.Option(
        [220, 1000], "--size", help="Data set sizes of the end-to-end runs (--size 0: none)."
    ),
    kimg: float = typer.Option(0, min=0, help="Length of each end-to-end run (default: 300 on CUDA, 40 on a CPU)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    profile: bool = typer.Option(
        False, "--profile", help="Instead: where a training step's time goes, phase by phase (torch.profiler)."
    ),
    discriminator: str = typer.Option(
        None, help="The D of --profile: dcgan | projected | dcgan+projected | dcgan+shallow (default: the shipped one)."
    ),
    arch: str = typer.Option(
        None,
        help="The networks of --profile and the end-to-end runs: dcgan | resize | r3gan (default: the shipped one).",
    ),
) -> None:
    """Pure-step images/s against the lecture's notebook loop (median and spread of interleaved
    trials), and `gan train` end to end: images/s, its ratio to pure steps, MB written."""
    import ganlab.bench as benchmark

    unknown = set(config or []) - set(benchmark.CONFIGS)
    if unknown:
        print(f"error: --config: unknown {sorted(unknown)}; choose from {sorted(benchmark.CONFIGS)}", file=sys.stderr)
        raise typer.Exit(1)
    if any(n < 0 for n in size):  # they were dropped, silently, with the 0 that means none
        print(
            f"error: --size: {min(size)} is negative; a data set size in images, or 0 for no end-to-end run",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    for option, value, fields in (
        ("--device", device, Params.model_fields),
        ("--discriminator", discriminator, ModelParams.model_fields),
        ("--arch", arch, ModelParams.model_fields),
    ):
        choices = typing.get_args(fields[option.removeprefix("--")].annotation)
        if value is not None and value not in choices:
            print(f"error: {option}: {value!r} is not one of {', '.join(choices)}", file=sys.stderr)
            raise typer.Exit(1)
    try:
        if profile:
            benchmark.print_profile(config, steps, device, discriminator, arch)
            return
        benchmark.main(config, trials, steps, device, json_output, tuple(n for n in size if n > 0), kimg or None, arch)
    except UserError as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def plots(
    revisions: list[str] = typer.Argument(
        None, help="Git revisions or experiment names to compare (`dvc plots diff`); none: the workspace."
    ),
    out: Path = typer.Option(dvc_plots.PLOTS_DIR, "--out", "-o", help="Folder of the page (index.html)."),
    svg: bool = typer.Option(False, "--svg", help="Also each plot as a static SVG, in OUT/svg/."),
) -> None:
    """`dvc plots show` that renders offline: OUT/index.html with Vega inlined (DVC's own page loads it from a CDN)."""
    try:
        page, warnings = dvc_plots.render_page(revisions or [], out)
        svgs = dvc_plots.render_svgs(revisions or [], out / "svg") if svg else []
    except UserError as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        raise typer.Exit(1) from None
    if warnings:
        print(warnings, file=sys.stderr)
    print(page)
    if svgs:
        print(f"{len(svgs)} SVGs in {out / 'svg'}")


@app.command("demo-faces")
def demo_faces(
    out_dir: Path,
    count: int = typer.Option(64, min=1),
    seed: int = typer.Option(0, min=0),
    size: int = typer.Option(128, min=16, max=1024),
) -> None:
    """Write COUNT toy faces and their labels.csv into OUT_DIR (the demo data set, as files)."""
    write_demo_faces(out_dir, count, seed, size)
    print(f"wrote {count} faces and labels.csv to {out_dir}")


if __name__ == "__main__":
    app()
