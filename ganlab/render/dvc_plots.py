"""``dvc plots show`` that renders offline: the page with Vega, Vega-Lite and vega-embed inlined.

DVC's page (dvc_render) loads those three libraries from a CDN, so without a network it is blank.
``dvc plots show --html-template T`` fills T's ``{plot_divs}`` with the plots (each a div calling
``vegaEmbed``) and its ``{scripts}`` with the CDN tags; a template without ``{scripts}`` and with
the libraries in a ``<script>`` of its own renders anywhere. vl-convert ships that bundle
(``vl_convert.javascript_bundle``) and also renders a Vega-Lite spec to SVG in process.

The template is a cache in ``.dvc/tmp/`` (DVC's own scratch folder, ignored by the ``.dvc/.gitignore``
that ``dvc init`` writes; no output of the pipeline): about 0.9 MB, 3-4 s to bundle, named by the
vl-convert and Vega-Lite versions, so an upgrade rebuilds it. The page goes to ``reports/plots/``
(git-ignored), beside the other reports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import vl_convert

from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path

TEMPLATE_DIR = Path(".dvc/tmp/gan-plots")
PLOTS_DIR = Path("reports/plots")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>gan-lab plots</title>
    <!-- Vega %(vega)s, Vega-Lite %(vega_lite)s, vega-embed %(embed)s, inlined by vl-convert %(vl_convert)s: no network needed -->
    <script>
%(bundle)s
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vega_lite_version() -> str:
    """The newest Vega-Lite 5 that vl-convert carries: DVC's plot templates are written for v5."""
    fives = [v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == "5"]
    if not fives:
        raise UserError(
            f"vl-convert {vl_convert.__version__} carries no Vega-Lite 5 (DVC's plots need it): pip install 'vl-convert-python<2'"
        )
    return max(fives, key=lambda v: tuple(int(x) for x in v.split(".")))


def offline_template(folder: Path = TEMPLATE_DIR) -> Path:
    """The HTML template for ``dvc plots show --html-template``, built once per vl-convert version."""
    vl = vega_lite_version()
    path = folder / f"offline-vl-convert-{vl_convert.__version__}-vega-lite-{vl}.html"
    if not path.is_file():
        bundle = vl_convert.javascript_bundle(vl_version=vl)
        # the page's own placeholders, or an end tag, inside the code would break the page
        clash = [s for s in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script") if s in bundle.lower()]
        if clash:
            raise UserError(f"vl-convert {vl_convert.__version__}: its JavaScript bundle contains {clash[0]!r}")
        page = PAGE % {
            "vega": vl_convert.get_vega_version(),
            "vega_lite": vl,
            "embed": vl_convert.get_vega_embed_version(),
            "vl_convert": vl_convert.__version__,
            "bundle": bundle,
        }
        with atomic_path(path) as tmp:
            tmp.write_text(page, encoding="utf-8")
    return path


def _dvc(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``dvc ARGS`` as the user would type it (the CLI, not DVC's internal API)."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit code {done.returncode}"
        raise UserError(f"dvc {' '.join(args[:2])}: {why.removeprefix('ERROR: ')}")
    return done


def _plots_command(revisions: list[str]) -> list[str]:
    # `dvc plots diff` with no revision compares the workspace with HEAD; `show` is the workspace alone
    return ["plots", "diff", *revisions] if revisions else ["plots", "show"]


def _check_project() -> None:
    if not Path(".dvc").is_dir() or not Path("dvc.yaml").is_file():
        raise UserError("no .dvc/ or dvc.yaml here: run `gan plots` from the project's root")


def render_page(revisions: list[str], out: Path = PLOTS_DIR) -> tuple[Path, str]:
    """``dvc plots show`` (or ``dvc plots diff REVISIONS``) into ``out/index.html``, offline.

    Returns the page and DVC's warnings (a plot it could not load: timing.csv, which is no output,
    is missing from a fresh clone)."""
    _check_project()
    template = offline_template()
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.unlink(missing_ok=True)  # DVC writes no page when it finds no plot data; never leave an old one
    done = _dvc([*_plots_command(revisions), "--html-template", str(template), "-o", str(out)])
    if not page.is_file():
        raise UserError("no plot data (reports/train/history.csv): run `dvc repro` or `dvc pull` first")
    html = page.read_text(encoding="utf-8")
    with atomic_path(page) as tmp:
        tmp.write_text(safe_specs(html), encoding="utf-8")
    warnings = done.stderr.strip()
    if "failed to load some plots" in warnings:
        warnings += " (`dvc plots show --json` names them; reports/train/timing.csv is no output: it exists where `gan train` ran)"
    return page, warnings


SPEC = "var spec = "  # how DVC's div starts each plot's data, inside a <script>


def safe_specs(html: str) -> str:
    """The page with each plot's spec written again so that no string in it can end its <script>.

    DVC writes the specs with ``json.dumps``, which leaves ``<`` as it is, and a spec holds the
    revisions compared: a git ref may be ``x</script><script>alert(1)</script>``. Each spec is
    read back as JSON (its extent is the JSON's, whatever its strings say) and ``<``, ``>`` and
    ``&`` become ``\\u003c``, ``\\u003e`` and ``\\u0026``: the same strings to JavaScript, nothing to
    the HTML parser. Only the body is searched: the inlined bundle in the head is ours."""
    decoder = json.JSONDecoder()
    head = html.find("<script>")
    body = 0 if head < 0 else max(0, html.lower().find("</script", head))  # the bundle has no "</script" of its own
    out, pos = [html[:body]], body
    while (start := html.find(SPEC, pos)) != -1:
        start += len(SPEC)
        spec, end = decoder.raw_decode(html, start)
        text = json.dumps(spec).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        out += [html[pos:start], text]
        pos = end
    return "".join(out) + html[pos:]


def _file_name(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80] or "plot"


def render_svgs(revisions: list[str], out: Path = PLOTS_DIR / "svg") -> list[Path]:
    """Each of DVC's plots as a static SVG (no JavaScript at all), from ``dvc plots show --json``."""
    _check_project()
    done = _dvc([*_plots_command(revisions), "--json"])
    data = json.loads(done.stdout).get("data", {})
    vl = vega_lite_version()
    for old in out.glob("*.svg"):  # the folder is this function's alone: no SVG of a plot gone stays behind
        old.unlink()
    written: list[Path] = []
    for title, renderers in data.items():
        for renderer in (r for r in renderers if r.get("type") == "vega"):
            # allowed_base_urls=[]: the data is inline; a spec that fetched anything would fail here, not hang
            svg = vl_convert.vegalite_to_svg(renderer["content"], vl_version=vl, allowed_base_urls=[])
            stem, n = _file_name(title), 1
            path = out / f"{stem}.svg"
            while path in written:  # two titles that differ only in punctuation
                n += 1
                path = out / f"{stem}-{n}.svg"
            with atomic_path(path) as tmp:
                tmp.write_text(svg, encoding="utf-8")
            written.append(path)
    if not written:
        raise UserError("no plot data (reports/train/history.csv): run `dvc repro` or `dvc pull` first")
    return written
