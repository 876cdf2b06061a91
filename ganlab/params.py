"""``params.yaml`` parsed once, at the edge, into typed and validated settings.

The defaults here are the shipped params.yaml, value for value (a test compares them), so an
empty or partial file means what the shipped one means. What each setting means is said once, beside
it in params.yaml, where users read and change it; here only the values are checked
(tests/test_param_docs.py).

Every mistake becomes one line naming the file and the dotted key (with a did-you-mean for
unknown keys), never a traceback from deep inside a stage.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ganlab.errors import UserError

IMAGE_SIZES = (32, 64, 128, 256)  # what the networks support (ganlab/nets/dcgan.py; a test keeps them equal)
MAX_KIMG = 1e9  # a trillion images, 40000x StyleGAN2's longest runs: the clock's step arithmetic stays exact in floats
MAX_MINUTES = 60 * 24 * 365  # a year of wall time
MIN_CADENCE_KIMG = 0.001  # one image: a cadence shorter than a step's images is due at every step anyway
MAX_PARAMS_BYTES = 2**20  # the shipped file is 5 KB; a larger one is a mistake or an attack on the parser
MAX_YAML_DEPTH = 32  # the shipped file nests 3 deep; 50000 brackets overflowed Python's stack
SEED_LIMIT = 2**62  # torch seeds are 64-bit; streams add offsets to a seed
MAX_BATCH = (
    4096  # twice BigGAN's; a step's activations grow with it (and a data set of 100000 demo faces would be one batch)
)


class _Section(BaseModel):
    # allow_inf_nan: no setting means anything at .inf or .nan (a length, a cadence, a latent value)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """YAML reads yes/no/true/false as booleans, and pydantic would take them as 1 and 0."""
        ann = cls.model_fields[info.field_name].annotation
        if isinstance(v, bool) and ann is not bool and (ann in (int, float) or set(get_args(ann)) & {int, float}):
            raise ValueError("expected a number, not yes/no")
        return v


class DemoParams(_Section):
    count: int = Field(1000, ge=1, le=100_000)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)


class PrepareParams(_Section):
    source: str = "demo"
    image_size: int = 64
    crop: Literal["center", "pad"] = "center"
    background: tuple[int, int, int] = (255, 255, 255)
    demo: DemoParams = DemoParams()

    @field_validator("source")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be 'demo' or a folder of images, e.g. data/raw")
        return v

    @field_validator("image_size")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v not in IMAGE_SIZES:
            raise ValueError(f"must be one of {list(IMAGE_SIZES)}")
        return v

    @field_validator("background")
    @classmethod
    def _rgb(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(0 <= c <= 255 for c in v):
            raise ValueError("each channel must be in 0..255")
        return v


# The names of the tables that run each choice, which import this module: a test keeps each equal to
# its table, so that a name accepted here never ends in a KeyError there.
ARCHS = ("dcgan", "resize", "r3gan")  # ganlab/nets/archs.py: ARCHS
DISCRIMINATORS = ("dcgan", "projected", "dcgan+projected", "dcgan+shallow")  # ganlab/nets/factory.py: DISCRIMINATORS
LOSS_NAMES = ("bce", "hinge", "rpgan")  # ganlab/training/loss.py: LOSSES
AUGMENTS = ("color", "translation", "cutout")  # ganlab/training/augment.py: POLICIES
FEATURE_BASES = ("zeros", "ones", "neg_ones")  # ganlab/render/latent_study.py: BASES
BEST_METRICS = (  # ganlab/training/best.py: DIRECTIONS
    "panel",
    "swd",
    "ndb",
    "fd",
    "kid",
    "recall",
    "attr_tv_mean",
    "attr_confident_mean",
    "attr_confident_all",
)


class ModelParams(_Section):
    arch: Literal[ARCHS] = "dcgan"
    latent_size: int = Field(128, ge=1, le=4096)
    g_width: int = Field(16, ge=1, le=1024)
    d_width: int = Field(32, ge=1, le=1024)
    d_spectral_norm: bool = False
    discriminator: Literal[DISCRIMINATORS] = "dcgan"


class StopParams(_Section):
    """When a run ends before its length: a plateau, or a budget of wall time."""

    patience: int = Field(4, ge=0)
    minutes: float | None = Field(None, gt=0)


# The roles of train's fields. Every field not marked RUNS shapes the checkpoint (its weights, the
# numerics they were computed with, and the history, evaluations and best generator it keeps), so a
# checkpoint resumes only under the same values of all of them (training/state.py: fingerprint).
# LENGTH: how long; a finished run may be extended by raising it. RUNS: only schedules, writes or
# ends the run: a changed value resumes the same checkpoint. (Ticks, grids, evaluations, amp,
# channels_last and compile stay shaping: each changes the checkpoint's bytes, which DVC and the
# byte-identical resume test see.)
LENGTH = {"role": "length"}
RUNS = {"role": "runs"}


class TrainParams(_Section):
    kimg: float = Field(150.0, gt=0, le=MAX_KIMG, json_schema_extra=LENGTH)
    stop: StopParams = Field(StopParams(), json_schema_extra=RUNS)
    extend: bool = Field(True, json_schema_extra=RUNS)
    epochs: int | None = Field(None, ge=1, le=1_000_000, json_schema_extra=LENGTH)
    minutes: float | None = Field(None, gt=0, le=MAX_MINUTES, json_schema_extra=LENGTH)
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    lr: float = Field(1e-3, gt=0, le=1)
    lr_g: float | None = Field(None, gt=0, le=1)
    lr_d: float | None = Field(None, gt=0, le=1)
    loss: Literal[LOSS_NAMES] | None = None
    diffaugment: list[Literal[AUGMENTS]] = list(AUGMENTS)
    ada_target: float | None = Field(None, gt=0, lt=1)
    ada_kimg: float = Field(50.0, gt=0)
    flip: bool = True
    ema: float = Field(0.999, ge=0, lt=1)
    r1_gamma: float | None = Field(None, ge=0)
    r2_gamma: float | None = Field(None, ge=0)
    r1_every: int = Field(16, ge=1)
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = Field(1, ge=1, le=100)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    tick_kimg: float = Field(2.0, gt=0)
    grids: int = Field(40, le=500)
    grid_seed: int = Field(42, ge=0, lt=SEED_LIMIT)
    checkpoint_kimg: float = Field(25.0, gt=0, json_schema_extra=RUNS)
    channels_last: bool = True
    amp: bool = True
    log_checkpoint: bool = Field(False, json_schema_extra=RUNS)
    compile: bool = False
    data_on_device: Literal["auto", "always", "never"] = "auto"
    eval_kimg: float = Field(25.0, ge=0)
    eval_samples: int = Field(256, ge=16, le=50_000)
    eval_seed: int = Field(2024, ge=0, lt=SEED_LIMIT)
    best_metric: Literal[BEST_METRICS] = "panel"
    sync_batchnorm: bool = False

    @property
    def budget(self) -> tuple[float, str] | None:
        """(minutes, the key that set them) of wall time that end the run: ``minutes`` or
        ``stop.minutes``, whichever is shorter; None when neither is set."""
        limits = [(m, k) for m, k in ((self.minutes, "train.minutes"), (self.stop.minutes, "train.stop.minutes")) if m]
        return min(limits) if limits else None

    @classmethod
    def fields_of(cls, role: dict[str, str]) -> set[str]:
        return {n for n, f in cls.model_fields.items() if f.json_schema_extra == role}

    @field_validator("tick_kimg", "checkpoint_kimg", "eval_kimg")
    @classmethod
    def _cadence(cls, v: float) -> float:
        """Below one image, the count of due points overflows; above it, a cadence shorter than
        one step is simply due at every step."""
        if 0 < v < MIN_CADENCE_KIMG:
            raise ValueError(
                f"must be at least {MIN_CADENCE_KIMG} (one image); anything up to one step's images is due at every step"
            )
        return v

    @field_validator("grids")
    @classmethod
    def _two_ends(cls, v: int) -> int:
        """The grids run from 1/500 of the run to its end, and the end always gets one: 1 gave the
        early grid and the last (3 frames with the untrained one), as 2 does."""
        if v < 2:
            raise ValueError(
                "must be at least 2: one early in the run and one at its end (the untrained grid comes on top)"
            )
        return v

    @field_validator("diffaugment")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        """A transform named twice is applied twice, at every step: a list of thousands took as many
        passes over each batch."""
        if len(set(v)) < len(v):
            raise ValueError("each transform at most once (a repeat applies it again to every batch)")
        return v

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v


class SampleParams(_Section):
    seed: int = Field(42, ge=0, lt=SEED_LIMIT)
    count: int = Field(16, ge=0, le=10_000)


class SweepParams(_Section):
    dim: int = 3
    start: float = 0.0
    stop: float = 1.0
    steps: int = Field(9, ge=2, le=64)
    base: Literal["random", "zeros", "ones"] = "random"


STUDY_IMAGES = 256  # per list of the latent study: one image each on one page (120000 constants took 4.85 GB)


class LatentStudyParams(_Section):
    constants: list[float] = Field([0.0, 1.0, -1.0, 0.5, 0.3], max_length=STUDY_IMAGES)
    one_hot_dims: list[int] = Field([0, 3, 64, 123], max_length=STUDY_IMAGES)
    feature_base: Literal[FEATURE_BASES] = "ones"
    features: dict[int, float] = Field({3: 50.0, 123: -50.0}, max_length=STUDY_IMAGES)
    sweep: SweepParams = SweepParams()
    seed: int = Field(7, ge=0, lt=SEED_LIMIT)

    def dimensions(self) -> list[tuple[str, int]]:
        """(key, latent dimension) of every dimension the study names."""
        return [
            *(("one_hot_dims", d) for d in self.one_hot_dims),
            *(("features", d) for d in self.features),
            ("sweep.dim", self.sweep.dim),
        ]


class VideoParams(_Section):
    fps: float = Field(8.0, gt=0, le=120)
    codec: str = "MJPG"
    container: Literal["avi", "mp4"] = "avi"
    gif: bool = True
    gif_scale: float = Field(0.5, gt=0, le=1)

    @field_validator("codec")
    @classmethod
    def _fourcc(cls, v: str) -> str:
        if len(v) != 4:
            raise ValueError("must be a four-character code such as MJPG")
        return v


class EvaluateParams(_Section):
    samples: int = Field(1000, ge=16, le=50_000)
    seed: int = Field(2024, ge=0, lt=SEED_LIMIT)
    fid: bool = True
    inception_weights: str = ""


class TrackingParams(_Section):
    experiment: str = Field("gan-lab", min_length=1, max_length=200)

    @field_validator("experiment")
    @classmethod
    def _a_folder(cls, v: str) -> str:
        """Its artifacts go to mlruns/<the name, characters other than letters, digits, . and -
        made _>: "." or ".." would put them in mlruns/ itself or in the project's root (and its
        length limits keep it a folder name)."""
        if re.sub(r"[^\w.-]+", "_", v) in (".", ".."):  # as ganlab/io/tracking.py names the folder
            raise ValueError("must name a folder under mlruns/ (its artifacts go there), not '.' or '..'")
        return v


class Params(_Section):
    prepare: PrepareParams = PrepareParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    sample: SampleParams = SampleParams()
    latent_study: LatentStudyParams = LatentStudyParams()
    video: VideoParams = VideoParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    generator: Literal["best", "last"] = "best"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _latent_dims_in_range(self) -> Params:
        size = self.model.latent_size
        for key, dim in self.latent_study.dimensions():
            if not 0 <= dim < size:
                raise ValueError(
                    f"latent_study.{key}: dimension {dim} is outside 0..{size - 1} (model.latent_size is {size})"
                )
        return self


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, f"{prefix}{name}.")
    return keys


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, _known_keys(Params), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{key}: unknown key{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a cross-field check names its own key
        return msg
    return f"{key}: {msg} (got {excerpt(err['input'])})"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 100, 100, 100  # then cut to 60, with "…"


def excerpt(value: Any, limit: int = 60) -> str:
    """The value's repr, at most ``limit`` characters: a plain repr of an alias bomb's billion
    items hung the error message past 2 GB. reprlib stops at a few items and levels before it
    builds anything."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{source}: {_describe(e.errors()[0])}") from None


class _Refused(Exception):
    """A params file that is valid YAML but not accepted here; the message is one line."""


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys or deep nesting.

    An alias repeats a node without copying it, so nine nested aliases of ten items each ("billion
    laughs") parse in milliseconds into a value whose every later walk takes hours; params.yaml
    has no use for them. A duplicate key silently kept the last value. Python's stack overflowed
    on 50000 nested brackets, in the composer, which recurses per level."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            raise _Refused(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted in a params file; write the value out"
            )
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(f"line {self.peek_event().start_mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _no_duplicate_keys(node: yaml.Node, prefix: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if key.tag == "tag:yaml.org,2002:int":  # `3:` and `03:` are one dimension of latent_study.features
                name = str(yaml.constructor.SafeConstructor().construct_yaml_int(key))
            if name in seen:
                raise _Refused(
                    f"{prefix}{name}: duplicate key at line {line} (first at line {seen[name]}); YAML would keep the last silently"
                )
            seen[name] = line
            _no_duplicate_keys(value, f"{prefix}{name}.")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, f"{prefix}{i}.")


def _parse_yaml(text: str) -> Any:
    loader = _ParamsLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _no_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found")
    if (size := path.stat().st_size) > MAX_PARAMS_BYTES:
        raise UserError(f"{path}: {size} bytes; a params file is at most {MAX_PARAMS_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#x} at offset {e.start}); save it as UTF-8"
        ) from None
    return params_from_text(text, str(path))


def params_from_text(text: str, source: str) -> Params:
    """Params from a params file's text, read as :func:`load_params` reads the file (also a
    committed version that git prints, which a repository could plant as well)."""
    try:
        raw = _parse_yaml(text)
    except _Refused as e:
        raise UserError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:  # a last guard: the depth limit above should come first
        raise UserError(f"{source}: nested too deeply to read") from None
    return parse_params(raw, source)


def flatten(params: Params, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Dotted keys, as MLflow and DVC show them: {"train.lr": 0.0002, ...}; ``sections``: only these top-level keys."""
    out: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + str(k)] = v

    dumped = params.model_dump(mode="json")
    walk({k: v for k, v in dumped.items() if sections is None or k in sections}, "")
    return out
