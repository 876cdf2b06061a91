"""What a setting means is written once, beside it in params.yaml, where users read and change it.

ganlab/params.py validates the same keys but does not explain them again (two copies drifted:
one said ``loss: null`` meant bce or rpgan, the other left resize out). So: every setting has an
explanation in params.yaml, still after `dvc exp run -S` rewrites the file; no field in
ganlab/params.py carries one; and every fixed set of names a setting accepts is exactly the keys
of the table that runs it. Only keys and comments are read, never values, so a user's overrides
do not fail these tests.
"""

from __future__ import annotations

import ast
import io
import re
import shutil
import tokenize
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from ganlab.params import Params

ROOT = Path(__file__).resolve().parents[1]


def _sections(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Every dotted key of the settings -> whether it is a section (a mapping of further keys)."""
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        nested = isinstance(ann, type) and issubclass(ann, BaseModel)
        out[prefix + name] = nested
        if nested:
            out.update(_sections(ann, f"{prefix}{name}."))
    return out


def _is_comment(line: str) -> bool:
    return line.strip().startswith("#")


def explanations(text: str) -> dict[str, str | None]:
    """Dotted key -> its explanation in a params file: the comment on its line after the value,
    else the comment lines right above it, else a comment of its section that names it
    (``# constants: ...; one_hot_dims: ...``: a comment line below a list is lost when DVC
    rewrites the list, so the keys after one are explained above it); None when there is none."""
    lines = text.splitlines()
    out: dict[str, str | None] = {}

    def walk(node: yaml.MappingNode, prefix: str, first: int) -> None:
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line
            said = None
            if value.end_mark.line == line and not isinstance(value, yaml.SequenceNode):
                rest = lines[line][value.end_mark.column :].strip()
                said = rest[1:].strip() if rest.startswith("#") else None
            above = line
            while above > 0 and _is_comment(lines[above - 1]):
                above -= 1
            if said is None and above < line:
                said = " ".join(s.strip().lstrip("#").strip() for s in lines[above:line])
            if said is None:
                pattern = re.compile(rf"(#|;|,)\s*{re.escape(name)}:")
                said = next((s.strip() for s in lines[first:line] if _is_comment(s) and pattern.search(s)), None)
            out[prefix + name] = said
            if isinstance(value, yaml.MappingNode):
                walk(value, f"{prefix}{name}.", line + 1)

    walk(yaml.compose(text), "", 0)
    return out


def undocumented(text: str) -> list[str]:
    said = explanations(text)
    keys = _sections(Params)
    missing = [f"{k}: not in the file" for k in keys if k not in said]
    return missing + [f"{k}: no comment explains it" for k, section in keys.items() if not section and not said.get(k)]


def test_every_setting_is_in_params_yaml_with_its_explanation():
    """A setting only in the code would take its default unseen; one without a comment, unexplained."""
    problems = undocumented((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert not problems, "params.yaml:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "override",
    [
        "prepare.background=[0,0,0]",
        "train.diffaugment=[color]",
        "train.diffaugment=[]",
        "train.betas=[0.0,0.99]",
        "train.lr=0.002",
        "train.loss=hinge",
        "latent_study.constants=[0.0]",
        "latent_study.one_hot_dims=[1]",
        "latent_study.features={3:60.0,123:-50.0}",
    ],
)
def test_the_explanations_survive_dvc_rewriting_the_file(tmp_path, override):
    """`dvc exp run -S` rewrites the whole file through ruamel (tests/test_dvc_params_form.py) and
    drops a comment line that follows a list: no explanation may sit there."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, [override])
    assert not undocumented(path.read_text(encoding="utf-8")), "\n".join(undocumented(path.read_text()))


def _field_comments(source: str) -> list[tuple[int, str]]:
    """(line, comment) of every comment on a settings field of ganlab/params.py or right above it."""
    lines = source.splitlines()
    comments = {
        t.start[0]: t.string
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    }
    found = []
    for cls in ast.parse(source).body:
        if not (isinstance(cls, ast.ClassDef) and cls.name.endswith("Params")):
            continue
        for field in (n for n in cls.body if isinstance(n, ast.AnnAssign)):
            start = field.lineno
            while start > 1 and _is_comment(lines[start - 2]):
                start -= 1
            found += [(n, comments[n]) for n in range(start, field.end_lineno + 1) if n in comments]
    return found


def test_the_settings_code_does_not_explain_them_a_second_time():
    """A limit's reason goes on its named constant (``SEED_LIMIT``, ``STUDY_IMAGES``), a
    validator's in its docstring; what the setting means, in params.yaml."""
    found = _field_comments((ROOT / "ganlab/params.py").read_text(encoding="utf-8"))
    assert not found, "ganlab/params.py: explained in params.yaml, not here:\n" + "\n".join(
        f"  line {n}: {c}" for n, c in found
    )


def test_the_field_check_sees_comments_on_the_line_and_above():
    source = "class XParams:\n    # above\n    a: int = 1  # beside\n    b: int = Field(\n        2\n    )  # after\n    c: int = 3\n"
    assert _field_comments(source) == [(2, "# above"), (3, "# beside"), (6, "# after")]


def test_every_fixed_choice_is_exactly_the_table_that_runs_it():
    """A name the settings accept but no table knows ends in a KeyError deep in a stage; a table's
    entry the settings refuse cannot be chosen. (model.arch, train.loss, model.discriminator and
    train.best_metric: tests/test_structure.py.)"""
    from ganlab.params import LatentStudyParams, TrainParams
    from ganlab.render import latent_study
    from ganlab.training import augment

    (policy,) = get_args(TrainParams.model_fields["diffaugment"].annotation)
    assert get_args(policy) == augment.POLICIES
    assert get_args(LatentStudyParams.model_fields["feature_base"].annotation) == tuple(latent_study.BASES)
