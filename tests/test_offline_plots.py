"""`gan plots`: DVC's plots page with Vega inlined (it renders with no network), and SVGs."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import vl_convert
import yaml
from typer.testing import CliRunner

from ganlab.hooks import HISTORY_KEYS
from ganlab.render import dvc_plots
from stages.cli import app

ROOT = Path(__file__).resolve().parents[1]
LOSS_D = (1.25, 0.875)  # the written curves' D losses, found again in the page


def _titles() -> list[str]:
    return [
        next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's dvc.yaml and two ticks of training curves written here (not the workspace's,
    which the user's own runs change), in a DVC repository without git; the template is built once
    (3-4 s) and copied where `gan plots` looks for it."""
    root = tmp_path_factory.mktemp("plots")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "reports/train").mkdir(parents=True)
    history = [{k: 0.5 for k in HISTORY_KEYS} | {"kimg": k, "loss_d": LOSS_D[i]} for i, k in enumerate((2, 4))]
    evals = [
        {
            "kimg": 4,
            "fd_ratio": 9.5,
            "swd_ratio": 2.5,
            "ndb": 0.3,
            "ndb_floor": 0.03,
            "precision": 0.1,
            "recall": 0.1,
            "nn_ratio": 1.1,
        }
    ]
    for name, rows in (("history.csv", history), ("eval_history.csv", evals)):
        with open(root / "reports/train" / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    template = dvc_plots.offline_template(root / dvc_plots.TEMPLATE_DIR)
    assert template.is_file()
    return root


@pytest.fixture(scope="module")
def rendered(project) -> tuple[str, str]:
    """`gan plots`' page, rendered once: (its HTML, DVC's warnings)."""
    with pytest.MonkeyPatch.context() as m:
        m.chdir(project)
        page, warnings = dvc_plots.render_page([])
        assert page == Path("reports/plots/index.html")
        return page.read_text(), warnings


def test_the_template_carries_vega_and_asks_dvc_for_no_script(project):
    (template,) = (project / dvc_plots.TEMPLATE_DIR).iterdir()
    text = template.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text  # {scripts}: DVC's CDN tags
    assert "window.vegaEmbed=" in text.replace(" ", "")
    assert not re.search(r"<script[^>]*\ssrc\s*=", text, re.I)


def test_the_page_holds_every_plot_and_loads_nothing(rendered):
    html, warnings = rendered
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I), "a script loaded from elsewhere"
    assert "cdn.jsdelivr" not in html and "{plot_divs}" not in html
    for title in _titles():
        # the div DVC writes for each plot, and its call to the inlined vegaEmbed
        div = title.translate({ord(c): "_" for c in r"!@#$%^&*()[]{};,<>?\/:.|`~=_+ "})
        assert f'<div id = "{div}">' in html and f"vegaEmbed('#{div}', spec);" in html
    assert f'"loss_d": "{LOSS_D[1]}"' in html  # the data itself, inline
    # timing.csv is not here (it is no output): DVC says so, the page is written anyway
    assert "failed to load some plots" in warnings and "timing.csv" in warnings


def test_plot_titles_keep_dvcs_page_valid():
    """DVC makes a div id of the title and writes it into `vegaEmbed('#ID', spec)` unescaped: an
    apostrophe ended that string, a syntax error that left the plot blank."""
    for title in _titles():
        assert not set(title) & set("'\"\\"), title


def test_a_plot_of_the_page_renders_to_svg_in_process(rendered):
    spec = re.search(r"var spec = (.*);\s*vegaEmbed\('#Losses', spec\);", rendered[0]).group(1)
    svg = vl_convert.vegalite_to_svg(json.loads(spec), vl_version=dvc_plots.vega_lite_version(), allowed_base_urls=[])
    assert svg.startswith("<svg") and svg.count("<path") > 10 and "loss_g" in svg


@pytest.mark.slow  # 4 s: every plot
def test_each_plot_renders_to_svg_in_process(project, monkeypatch):
    monkeypatch.chdir(project)
    (Path("reports/plots/svg") / "stale.svg").parent.mkdir(parents=True, exist_ok=True)
    Path("reports/plots/svg/stale.svg").write_text("<svg/>")
    svgs = dvc_plots.render_svgs([])
    assert sorted(Path("reports/plots/svg").iterdir()) == sorted(svgs)  # the stale one is gone
    assert Path("reports/plots/svg/losses.svg") in svgs
    for svg in svgs:
        text = svg.read_text()
        assert text.startswith("<svg") and "<path" in text, svg
    losses = Path("reports/plots/svg/losses.svg").read_text()
    assert "loss_d" in losses and "loss_g" in losses  # the legend


def test_outside_a_project_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plots"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no .dvc/ or dvc.yaml here: run `gan plots` from the project's root"


def test_a_revision_named_like_html_is_escaped_in_the_page(project, tmp_path, monkeypatch):
    """A git ref may hold `<`, `>` and `/`: DVC writes the revision into each plot's spec, inside a
    <script>, unescaped; `x</script><script>alert(1)</script>` ran its script in the page 9 times."""
    evil = "x</script><script>alert(1)</script>"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    shutil.copy(project / "dvc.yaml", tmp_path)
    for folder in ("reports", dvc_plots.TEMPLATE_DIR):  # the template: built once, by the module's fixture
        shutil.copytree(project / folder, tmp_path / folder)
    subprocess.run(["git", "add", "dvc.yaml", "reports", ".dvc/config"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "curves"], cwd=tmp_path, check=True)
    subprocess.run(["git", "branch", evil], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    html = dvc_plots.render_page([evil])[0].read_text()
    assert "<script>alert" not in html and html.lower().count("</script") == html.lower().count("<script")
    spec = re.search(r"var spec = (.*);\s*vegaEmbed\('#Losses', spec\);", html).group(1)
    assert evil in json.dumps(json.loads(spec))  # still the revision, for the legend
