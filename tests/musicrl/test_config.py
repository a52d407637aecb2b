"""Config presets, overrides and validation."""

from __future__ import annotations

import dataclasses

import pytest

from musicrl.config import ConfigError, apply_overrides, from_dict, opt, resolve, to_dict
from musicrl.data.config import DataConfig, LoaderConfig


def test_presets_resolve_and_differ():
    tiny, small = resolve(DataConfig, "tiny"), resolve(DataConfig, "small")
    assert tiny.clips_per_piece < small.clips_per_piece
    assert set(tiny.styles) < set(small.styles)
    assert resolve(LoaderConfig, "small").split == "train"


def test_overrides_are_typed():
    cfg = resolve(DataConfig, "small", ["seed=3", "clip_seconds=5", "styles=chorale,folk",
                                        "drum_fraction=0.2"])
    assert cfg.seed == 3 and cfg.clip_seconds == 5.0 and isinstance(cfg.clip_seconds, float)
    assert cfg.styles == ("chorale", "folk")
    assert resolve(LoaderConfig, "small", ["drop_remainder=false"]).drop_remainder is False


@pytest.mark.parametrize("override, words", [
    ("sed=3", ["unknown config key 'sed'", "Did you mean 'seed'"]),
    ("seed=abc", ["seed='abc'", "expected an integer"]),
    ("seed=-1", ["seed=-1", "out of range"]),
    ("drum_fraction=1.5", ["drum_fraction=1.5", "[0.0, 1.0]"]),
    ("sample_rate=44100", ["sample_rate=44100", "choose one of [16000]"]),
    ("styles=chorale,jazz", ["unknown style(s) ['jazz']", "choose from"]),
    ("bpm_min=200", ["bpm_min=200 > bpm_max=180"]),
    ("seed", ["not of the form key=value"]),
])
def test_bad_overrides_are_refused_with_the_key_named(override, words):
    with pytest.raises(ConfigError) as e:
        resolve(DataConfig, "small", [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*base.*small.*tiny"):
        resolve(DataConfig, "huge")


def test_configs_are_frozen_and_round_trip():
    cfg = resolve(DataConfig, "tiny", ["seed=5"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    assert from_dict(DataConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        from_dict(DataConfig, {**to_dict(cfg), "bogus": 1})


@dataclasses.dataclass(frozen=True)
class _Inner:
    width: int = opt(4, "width", min=1)


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = opt("a", "name", choices=("a", "b"))
    inner: _Inner = _Inner()
    rate: float | None = opt(None, "optional rate", min=0.0)


def test_nested_and_optional_fields():
    cfg = apply_overrides(_Outer(), ["inner.width=8", "name=b", "rate=0.5"])
    assert cfg.inner.width == 8 and cfg.name == "b" and cfg.rate == 0.5
    assert apply_overrides(cfg, ["rate=none"]).rate is None
    with pytest.raises(ConfigError, match="inner.width=0.*out of range"):
        apply_overrides(_Outer(), ["inner.width=0"])
    with pytest.raises(ConfigError, match="unknown config key 'inner.depth'"):
        apply_overrides(_Outer(), ["inner.depth=2"])
    with pytest.raises(ConfigError, match="nested config"):
        apply_overrides(_Outer(), ["inner=3"])
