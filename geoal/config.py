"""Typed project config: frozen dataclasses loaded from YAML with clear errors.

A project's ``geoal.yaml`` is the packaged ``configs/default.yaml`` overlaid with an
optional profile and the user's edits. Unknown keys and bad values raise
:class:`~geoal.errors.ConfigError` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from geoal.errors import ConfigError

_CLASS_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ \-.]*$")


@dataclass(frozen=True)
class StretchConfig:
    """Contrast stretch to 8 bits: percentile clip per band, computed once per scene."""

    mode: str = "auto"  # auto | always | never
    low: float = 2.0  # percent
    high: float = 98.0  # percent


@dataclass(frozen=True)
class TilingConfig:
    """How scenes are cut into chips."""

    size: int = 640  # pixels
    overlap: float = 0.2  # fraction of the chip side
    bands: tuple[int, ...] | None = None  # 1-based
    min_valid: float = 0.05  # fraction of valid pixels a chip needs
    stretch: StretchConfig = field(default_factory=StretchConfig)
    overview_max: int = 2048  # pixels, longest side of the statistics read
    max_chips: int = 1_000_000  # a scene that would make more is refused (--max-chips to allow)


@dataclass(frozen=True)
class ModelConfig:
    """The detector a project starts from."""

    arch: str = "yolov8n.yaml"
    imgsz: int | None = None  # training input size, pixels; None = the chip size


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring defaults (``geoal score``)."""

    views: int = 2
    batch: int = 16
    device: str = "cpu"
    aggregation: str = "miaod"
    top_k: int = 3
    conf: float = 0.05  # detections kept (stored, pre-annotations) at or above this confidence
    iou: float = 0.7  # NMS IoU threshold


@dataclass(frozen=True)
class SelectConfig:
    """Selection defaults (``geoal select``)."""

    strategy: str = "adaptive"
    budget: int = 50
    seed: int = 0


@dataclass(frozen=True)
class ExportConfig:
    """Annotation export defaults (``geoal export``, ``geoal labelstudio push``)."""

    conf: float = 0.25  # detections shown to annotators as pre-annotations at or above this


@dataclass(frozen=True)
class ProjectConfig:
    """The whole of ``geoal.yaml``."""

    name: str | None = None
    classes: tuple[str, ...] = ()
    tiling: TilingConfig = field(default_factory=TilingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def packaged_config_text(name: str) -> str:
    """Text of a packaged config (``default`` or a profile name)."""
    path = resources.files("geoal.configs").joinpath(f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(f"unknown profile {name!r}: choose one of {', '.join(list_profiles())}")
    return path.read_text(encoding="utf-8")


def list_profiles() -> list[str]:
    """Names of the packaged imagery profiles."""
    names = [
        p.name[: -len(".yaml")]
        for p in resources.files("geoal.configs").iterdir()
        if p.name.endswith(".yaml") and p.name != "default.yaml"
    ]
    return sorted(names)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict overlay: keys of ``over`` win; nested mappings merge."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def default_dict(profile: str | None = None) -> dict[str, Any]:
    """The default config as a dict, overlaid with a packaged profile."""
    data = yaml.safe_load(packaged_config_text("default")) or {}
    if profile:
        data = merge(data, yaml.safe_load(packaged_config_text(profile)) or {})
    return data


def parse_classes(
    text: str | list[str] | tuple[str, ...], where: str = "--classes"
) -> tuple[str, ...]:
    """Validate class names: non-empty, unique, no commas; order is the model's order."""
    if not isinstance(text, (str, list, tuple)):
        raise ConfigError(
            f"{where}: expected a list of class names such as [ship, whale], got {text!r}"
        )
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(not isinstance(s, str) or not s for s in items):
        raise ConfigError(f"{where}: give one or more class names, e.g. 'ship,whale'")
    bad = [s for s in items if not _CLASS_NAME.match(s)]
    if bad:
        raise ConfigError(
            f"{where}: invalid class name {bad[0]!r}: use letters, digits, spaces, '_', '-', '.'"
        )
    dupes = sorted({s for s in items if items.count(s) > 1})
    if dupes:
        raise ConfigError(f"{where}: class {dupes[0]!r} is listed twice")
    return tuple(items)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> ProjectConfig:
    """Build and validate a :class:`ProjectConfig`; errors name ``source`` and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    full = merge(default_dict(), data)
    if full.get("name") is not None and not isinstance(full["name"], str):
        raise ConfigError(f"{source}: name: expected text, got {full['name']!r}")
    cfg = ProjectConfig(
        name=full.get("name"),
        classes=parse_classes(full.get("classes") or [], f"{source}: classes")
        if full.get("classes")
        else (),
        tiling=_build(TilingConfig, full["tiling"], f"{source}: tiling"),
        model=_build(ModelConfig, full["model"], f"{source}: model"),
        score=_build(ScoreConfig, full["score"], f"{source}: score"),
        select=_build(SelectConfig, full["select"], f"{source}: select"),
        export=_build(ExportConfig, full["export"], f"{source}: export"),
    )
    unknown = set(full) - {f.name for f in dataclasses.fields(ProjectConfig)}
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    validate(cfg, source)
    return cfg


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {sorted(unknown)[0]!r} (valid: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "stretch":
            value = _build(StretchConfig, value, f"{where}.stretch")
        elif name == "bands" and value is not None:
            value = parse_bands(value, f"{where}.bands")
        else:
            value = _coerce(value, fields[name].type, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    kind = str(annotation)
    if kind == "int | None":
        if value is None:
            return value
        kind = "int"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    elif kind == "str" and not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def parse_bands(value: Any, where: str = "--bands") -> tuple[int, ...]:
    """Band list from '3,2,1' or [3, 2, 1]: 1 or 3 positive 1-based indexes."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]  # YAML `bands: 2`: one band
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(f"{where}: expected band numbers like 3,2,1, got {value!r}")
    items: list[Any] = value.split(",") if isinstance(value, str) else list(value)
    try:
        bands = tuple(int(str(b).strip()) for b in items)
    except ValueError:
        raise ConfigError(f"{where}: expected band numbers like 3,2,1, got {value!r}") from None
    if len(bands) not in (1, 3) or any(b < 1 for b in bands):
        raise ConfigError(f"{where}: give 1 or 3 band numbers counted from 1, got {value!r}")
    return bands


def validate(cfg: ProjectConfig, source: str = "config") -> None:
    """Range checks that a type alone does not express."""
    t = cfg.tiling
    checks: list[tuple[bool, str]] = [
        (32 <= t.size <= 8192, f"tiling.size must be 32-8192 pixels, got {t.size}"),
        (0.0 <= t.overlap < 1.0, f"tiling.overlap must be in [0, 1), got {t.overlap}"),
        (0.0 <= t.min_valid <= 1.0, f"tiling.min_valid must be in [0, 1], got {t.min_valid}"),
        (
            t.stretch.mode in ("auto", "always", "never"),
            f"tiling.stretch.mode must be auto, always or never, got {t.stretch.mode!r}",
        ),
        (
            0.0 <= t.stretch.low < t.stretch.high <= 100.0,
            f"tiling.stretch needs 0 <= low < high <= 100, got {t.stretch.low}, {t.stretch.high}",
        ),
        (
            64 <= t.overview_max <= 16384,
            f"tiling.overview_max must be 64-16384, got {t.overview_max}",
        ),
        (t.max_chips >= 1, f"tiling.max_chips must be >= 1, got {t.max_chips}"),
        (
            cfg.model.imgsz is None or (cfg.model.imgsz >= 32 and cfg.model.imgsz % 32 == 0),
            f"model.imgsz must be a multiple of 32 pixels (or null: the chip size), got {cfg.model.imgsz}",
        ),
        (1 <= cfg.score.views <= 6, f"score.views must be 1-6, got {cfg.score.views}"),
        (cfg.score.batch >= 1, f"score.batch must be >= 1, got {cfg.score.batch}"),
        (cfg.score.top_k >= 1, f"score.top_k must be >= 1, got {cfg.score.top_k}"),
        (0.0 < cfg.score.conf < 1.0, f"score.conf must be in (0, 1), got {cfg.score.conf}"),
        (0.0 < cfg.score.iou <= 1.0, f"score.iou must be in (0, 1], got {cfg.score.iou}"),
        (cfg.select.budget >= 1, f"select.budget must be >= 1, got {cfg.select.budget}"),
        (0.0 <= cfg.export.conf <= 1.0, f"export.conf must be in [0, 1], got {cfg.export.conf}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")


def load_config(path: Path) -> ProjectConfig:
    """Read and validate a ``geoal.yaml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to be a geoal config") from None
    return config_from_dict(data, str(path))


def with_tiling(cfg: ProjectConfig, **changes: Any) -> ProjectConfig:
    """A copy of ``cfg`` with tiling options replaced (command-line overrides), validated."""
    new = dataclasses.replace(cfg, tiling=dataclasses.replace(cfg.tiling, **changes))
    validate(new, "command line")
    return new


def write_config(cfg: ProjectConfig, path: Path, header: str = "") -> None:
    """Write ``cfg`` as YAML atomically (temp file + rename)."""
    text = header + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
