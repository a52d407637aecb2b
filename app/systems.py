"""The systems the app serves (DESIGN §11): a system is a checkpoint × sampling settings.

A *system* is what voters compare in the arena and what the leaderboard ranks: one model
checkpoint (``weights``) with fixed settings (``guidance``, ``temperature``, and optionally
``best_of``: keep the best of N samples by the model's MuLan score; ``semantic_best_of``:
pass on the best of N stage-S continuations by the tempo reward model at ``tempo``, read
against the BPM the prompt states; ``tempo_combine``: ``"min"`` scores an ensemble such as
``assets/small/tempo-ensemble`` by its least sure member; ``mode_reward``: also by the mode
reward model in that folder, read against the mode the prompt names — the score is the
product of the two probabilities, or the mode's alone with ``"tempo": "none"``;
``mode_combine`` as ``tempo_combine``; ``acoustic_best_of`` with ``acoustic_mode_reward``
and/or ``acoustic_tempo_reward``: keep the best of N stage-A renderings by a mode model on
codec tokens, by a tempo model read from each rendering's re-tokenized audio, or by their
product, ``acoustic_mode_combine`` / ``acoustic_tempo_combine`` as ``mode_combine``), under a
name.
Systems are listed in a JSON or TOML file::

    {"systems": [
       {"name": "small-cfg3", "weights": "assets/small", "guidance": 3.0, "temperature": 1.0},
       {"name": "small-cfg1", "weights": "assets/small", "guidance": 1.0, "temperature": 1.0}
     ],
     "merge": {"system": "small-mix", "default": 0.5}}

* ``weights`` is loaded lazily (on the first request that needs it) with
  ``musicrl.pipeline.Pipeline.from_pretrained``; systems that share a checkpoint share one
  loaded pipeline.
* ``factory`` (instead of ``weights``) names any other generator: ``"package.module:callable"``
  or ``"path/to/file.py:callable"``; it is called as ``callable(name=..., **options)`` and must
  return a :class:`Generator`. The test suite and the load benchmark use this to serve a
  deterministic tone generator (``tests/app/conftest.py:ToneGenerator``) without a model.
* ``merge`` (optional) is the hook for the quality ↔ diversity slider (DESIGN §10): it names a
  system whose generator accepts a ``mix`` keyword (λ in [0, 1]) in ``generate``. The Create
  view shows the slider only when a merge system is configured and selected.

Relative paths (``weights``, a ``factory`` file) are resolved against the current working
directory, like every other path the ``musicrl`` command takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from musicrl.errors import MusicrlError

__all__ = [
    "DEFAULT_SYSTEMS",
    "Generator",
    "MergeSpec",
    "SystemConfigError",
    "SystemRegistry",
    "SystemSpec",
    "SystemUnavailable",
    "load_factory",
]


class SystemConfigError(MusicrlError, ValueError):
    """The systems file is malformed; the message names the entry and the fix."""


class SystemUnavailable(MusicrlError):
    """A system could not be loaded (missing weights, missing pipeline code, bad factory)."""


@runtime_checkable
class Generator(Protocol):
    """What the app needs from a text-to-music generator.

    ``generate`` returns float32 audio in [-1, 1] of shape ``(len(prompts), samples)`` at
    :attr:`sample_rate`; the same arguments must give the same audio (``seed``).
    """

    name: str
    sample_rate: int

    def generate(self, prompts: list[str], seconds: float, seed: int, guidance: float,
                 temperature: float) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class SystemSpec:
    """One entry of the systems file."""

    name: str
    weights: str | None = None
    guidance: float = 3.0
    temperature: float = 1.0
    best_of: int = 1
    semantic_best_of: int = 1
    tempo: str = "assets/small/tempo"
    tempo_combine: str = "mean"
    mode_reward: str = ""
    mode_combine: str = "mean"
    acoustic_best_of: int = 1
    acoustic_mode_reward: str = ""
    acoustic_mode_combine: str = "mean"
    acoustic_tempo_reward: str = ""
    acoustic_tempo_combine: str = "mean"
    factory: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The settings recorded with every clip of this system (JSON-serialisable)."""
        out = {"guidance": self.guidance, "temperature": self.temperature}
        if self.weights:
            out["weights"] = self.weights
        if self.best_of > 1:
            out["best_of"] = self.best_of
        if self.semantic_best_of > 1:
            out["semantic_best_of"], out["tempo"] = self.semantic_best_of, self.tempo
            if self.tempo_combine != "mean":
                out["tempo_combine"] = self.tempo_combine
            if self.mode_reward:
                out["mode_reward"] = self.mode_reward
                if self.mode_combine != "mean":
                    out["mode_combine"] = self.mode_combine
        if self.acoustic_best_of > 1:
            out["acoustic_best_of"] = self.acoustic_best_of
            for kind in ("mode", "tempo"):
                if folder := getattr(self, f"acoustic_{kind}_reward"):
                    out[f"acoustic_{kind}_reward"] = folder
                    if (combine := getattr(self, f"acoustic_{kind}_combine")) != "mean":
                        out[f"acoustic_{kind}_combine"] = combine
        out.update(overrides)
        return out


@dataclasses.dataclass(frozen=True)
class MergeSpec:
    """The quality ↔ diversity slider's system (see the module doc)."""

    system: str
    default: float = 0.5
    label: str = "quality ↔ diversity"


DEFAULT_SYSTEMS: dict[str, Any] = {
    "systems": [
        {"name": "small-cfg3", "weights": "assets/small", "guidance": 3.0, "temperature": 1.0,
         "description": "the bundled small model, classifier-free guidance 3"},
        {"name": "small-cfg1", "weights": "assets/small", "guidance": 1.0, "temperature": 1.0,
         "description": "the bundled small model without guidance"},
    ]
}

_SPEC_KEYS = {f.name for f in dataclasses.fields(SystemSpec)}
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")


def _parse_spec(entry: Any, k: int) -> SystemSpec:
    where = f"systems[{k}]"
    if not isinstance(entry, Mapping):
        raise SystemConfigError(f"{where} must be a table/object, got {type(entry).__name__}")
    unknown = set(entry) - _SPEC_KEYS
    if unknown:
        raise SystemConfigError(f"{where} has unknown keys {sorted(unknown)}; allowed: "
                                f"{sorted(_SPEC_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or len(name) > 64 or set(name) - _NAME_OK:
        raise SystemConfigError(f"{where}.name must be 1-64 characters of letters, digits and "
                                f"- _ . + (got {name!r})")
    where = f"system {name!r}"
    if bool(entry.get("weights")) == bool(entry.get("factory")):
        raise SystemConfigError(f"{where} needs exactly one of 'weights' (a pipeline folder) "
                                "or 'factory' ('module:callable' or 'file.py:callable')")
    for key in ("guidance", "temperature"):
        v = entry.get(key, getattr(SystemSpec, key))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise SystemConfigError(f"{where}: {key} must be a finite number >= 0, got {v!r}")
    if entry.get("temperature", 1.0) == 0:
        raise SystemConfigError(f"{where}: temperature must be > 0")
    counts: dict[str, int] = {}
    for key, why in (("best_of", "the pipeline reranks with its MuLan; a factory generator "
                                 "does its own"),
                     ("semantic_best_of", "the pipeline's stage S"),
                     ("acoustic_best_of", "the pipeline's stage A")):
        n = counts[key] = entry.get(key, 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise SystemConfigError(f"{where}: {key} must be a whole number from 1 to 64, got "
                                    f"{n!r}")
        if n > 1 and not entry.get("weights"):
            raise SystemConfigError(f"{where}: {key} works with 'weights' systems ({why})")
    tempo = entry.get("tempo", SystemSpec.tempo)
    if not isinstance(tempo, str) or not tempo:
        raise SystemConfigError(f"{where}: tempo must be the folder of a tempo reward model, "
                                f"got {tempo!r}")
    combines = {}
    for key in ("tempo_combine", "mode_combine", "acoustic_mode_combine",
                "acoustic_tempo_combine"):
        combines[key] = entry.get(key, "mean")
        if combines[key] not in ("mean", "min"):
            raise SystemConfigError(f"{where}: {key} must be 'mean' (an ensemble's mean "
                                    f"probability) or 'min' (its least sure member), got "
                                    f"{combines[key]!r}")
    mode_reward = entry.get("mode_reward", "")
    if not isinstance(mode_reward, str):
        raise SystemConfigError(f"{where}: mode_reward must be the folder of a mode reward "
                                f"model (or absent), got {mode_reward!r}")
    if tempo == "none" and not mode_reward:
        raise SystemConfigError(f"{where}: tempo 'none' leaves semantic_best_of nothing to "
                                "select by; give mode_reward, or a tempo folder")
    aco = {k: entry.get(k, "") for k in ("acoustic_mode_reward", "acoustic_tempo_reward")}
    if (not all(isinstance(v, str) for v in aco.values())
            or (counts["acoustic_best_of"] > 1) != any(aco.values())):
        raise SystemConfigError(f"{where}: acoustic_best_of > 1 and acoustic_mode_reward (the "
                                "folder of a mode model on codec tokens, `musicrl train mode "
                                "--preset small-acoustic`) or acoustic_tempo_reward (a tempo "
                                "model, e.g. assets/small/tempo-ensemble) go together; got "
                                f"acoustic_best_of={counts['acoustic_best_of']!r}, "
                                + ", ".join(f"{k}={v!r}" for k, v in aco.items()))
    options = entry.get("options", {})
    if not isinstance(options, Mapping):
        raise SystemConfigError(f"{where}: options must be a table/object")
    return SystemSpec(name=name, weights=entry.get("weights"),
                      guidance=float(entry.get("guidance", 3.0)),
                      temperature=float(entry.get("temperature", 1.0)),
                      best_of=counts["best_of"], semantic_best_of=counts["semantic_best_of"],
                      tempo=tempo, tempo_combine=combines["tempo_combine"],
                      mode_reward=mode_reward, mode_combine=combines["mode_combine"],
                      acoustic_best_of=counts["acoustic_best_of"],
                      acoustic_mode_reward=aco["acoustic_mode_reward"],
                      acoustic_mode_combine=combines["acoustic_mode_combine"],
                      acoustic_tempo_reward=aco["acoustic_tempo_reward"],
                      acoustic_tempo_combine=combines["acoustic_tempo_combine"],
                      factory=entry.get("factory"), options=dict(options),
                      description=str(entry.get("description", "")))


def load_factory(ref: str) -> Callable[..., Any]:
    """Resolves ``"package.module:callable"`` or ``"path/to/file.py:callable"``."""
    if not isinstance(ref, str) or ":" not in ref:
        raise SystemUnavailable(f"factory {ref!r} must look like 'package.module:callable' or "
                                "'path/to/file.py:callable'")
    target, _, attr = ref.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise SystemUnavailable(f"factory file {path} does not exist (relative paths "
                                        "are resolved against the current folder)")
            mod_name = "musicrl_app_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except SystemUnavailable:
        raise
    except Exception as e:  # an import error of a plugin is the operator's to fix
        raise SystemUnavailable(f"cannot import factory {ref!r}: {type(e).__name__}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SystemUnavailable(f"factory {ref!r}: {attr!r} is not a callable in {target}")
    return fn


class _PipelineGenerator:
    """Adapts ``musicrl.pipeline.Pipeline`` to :class:`Generator` under a system's name."""

    def __init__(self, name: str, pipeline: Any):
        self.name = name
        self.pipeline = pipeline
        self.sample_rate = int(pipeline.sample_rate)

    def generate(self, prompts: list[str], seconds: float, seed: int, guidance: float,
                 temperature: float, **kw: Any) -> np.ndarray:
        return self.pipeline.generate(list(prompts), seconds=seconds, seed=seed,
                                      guidance=guidance, temperature=temperature, **kw)


class SystemRegistry:
    """The systems of one app: specs from a config, generators loaded on first use.

    Thread-safe: generators are loaded once (per system, and per pipeline folder) under a
    lock, so concurrent first requests do not load a checkpoint twice.
    """

    def __init__(self, specs: Iterable[SystemSpec], merge: MergeSpec | None = None,
                 source: str = "<built-in>"):
        self.specs: dict[str, SystemSpec] = {}
        for s in specs:
            if s.name in self.specs:
                raise SystemConfigError(f"{source}: system name {s.name!r} is used twice")
            self.specs[s.name] = s
        if not self.specs:
            raise SystemConfigError(f"{source}: lists no systems; add at least one under "
                                    "'systems'")
        if merge is not None and merge.system not in self.specs:
            raise SystemConfigError(f"{source}: merge.system {merge.system!r} is not one of the "
                                    f"systems ({', '.join(self.specs)})")
        self.merge = merge
        self.source = source
        self._generators: dict[str, Generator] = {}
        self._pipelines: dict[str, Any] = {}
        self._rewards: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SystemRegistry:
        """Builds the registry from the parsed config (see the module doc)."""
        if not isinstance(data, Mapping):
            raise SystemConfigError(f"{source}: the top level must be a table/object")
        unknown = set(data) - {"systems", "merge"}
        if unknown:
            raise SystemConfigError(f"{source}: unknown top-level keys {sorted(unknown)}; "
                                    "allowed: systems, merge")
        entries = data.get("systems")
        if not isinstance(entries, list):
            raise SystemConfigError(f"{source}: 'systems' must be a list of systems")
        specs = [_parse_spec(e, k) for k, e in enumerate(entries)]
        merge = None
        if data.get("merge") is not None:
            m = data["merge"]
            if not isinstance(m, Mapping) or not isinstance(m.get("system"), str):
                raise SystemConfigError(f"{source}: merge must be {{\"system\": NAME, "
                                        "\"default\": 0.5}}")
            default = m.get("default", 0.5)
            if isinstance(default, bool) or not isinstance(default, (int, float)) \
                    or not 0 <= default <= 1:
                raise SystemConfigError(f"{source}: merge.default must be in [0, 1]")
            merge = MergeSpec(m["system"], float(default),
                              str(m.get("label", MergeSpec.label)))
        return cls(specs, merge, source)

    @classmethod
    def from_file(cls, path: str | Path) -> SystemRegistry:
        """Reads a ``.json`` or ``.toml`` systems file."""
        p = Path(path)
        if not p.is_file():
            raise SystemConfigError(f"systems file {p} does not exist")
        try:
            if p.suffix.lower() == ".toml":
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            else:
                data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SystemConfigError(f"systems file {p} is not valid "
                                    f"{'TOML' if p.suffix.lower() == '.toml' else 'JSON'}: {e}"
                                    ) from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def default(cls) -> SystemRegistry:
        """The bundled small model under two guidance settings (:data:`DEFAULT_SYSTEMS`)."""
        return cls.from_dict(DEFAULT_SYSTEMS, source="<built-in defaults>")

    # -- use -------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """System names in config order."""
        return list(self.specs)

    def spec(self, name: str) -> SystemSpec:
        """The spec of ``name``; raises :class:`KeyError` with the known names."""
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(f"unknown system {name!r}; known: {', '.join(self.specs)}") from None

    def get(self, name: str) -> Generator:
        """The generator of system ``name``, loading it on first use."""
        spec = self.spec(name)
        gen = self._generators.get(name)
        if gen is not None:
            return gen
        with self._lock:
            gen = self._generators.get(name)
            if gen is None:
                gen = self._load(spec)
                self._generators[name] = gen
        return gen

    def _load(self, spec: SystemSpec) -> Generator:
        if spec.factory:
            fn = load_factory(spec.factory)
            try:
                gen = fn(name=spec.name, **dict(spec.options))
            except Exception as e:
                raise SystemUnavailable(f"system {spec.name!r}: factory {spec.factory!r} "
                                        f"failed: {type(e).__name__}: {e}") from e
        else:
            gen = _PipelineGenerator(spec.name, self._pipeline(spec))
        if not isinstance(gen, Generator):
            raise SystemUnavailable(f"system {spec.name!r}: {type(gen).__name__} is not a "
                                    "generator (needs name, sample_rate and generate())")
        return gen

    def _pipeline(self, spec: SystemSpec) -> Any:
        folder = str(Path(spec.weights).expanduser().resolve())
        if folder in self._pipelines:
            return self._pipelines[folder]
        if not Path(folder).exists():
            raise SystemUnavailable(f"system {spec.name!r}: weights folder {folder} does not "
                                    "exist (train or download the bundle, or fix --systems)")
        try:
            from musicrl.pipeline import Pipeline
        except ImportError as e:
            raise SystemUnavailable(f"system {spec.name!r} needs musicrl.pipeline, which cannot "
                                    f"be imported ({e}); use a 'factory' system meanwhile"
                                    ) from e
        try:
            pipe = Pipeline.from_pretrained(folder)
        except Exception as e:
            raise SystemUnavailable(f"system {spec.name!r}: cannot load the pipeline from "
                                    f"{folder}: {type(e).__name__}: {e}") from e
        self._pipelines[folder] = pipe
        return pipe

    def _reward(self, spec: SystemSpec, kind: str, folder: str, combine: str) -> Any:
        """The ``kind`` ("tempo", "mode", "acoustic mode" or "acoustic tempo") reward in
        ``folder``, loaded once (the app may reach rewards/). "acoustic tempo" reads the tempo
        of decoded audio through the system's own semantic tokenizer and codec."""
        key = (kind, folder, combine) + ((spec.weights,) if kind == "acoustic tempo" else ())
        with self._lock:
            if key not in self._rewards:
                if kind.endswith("tempo"):
                    from rewards.tempo import TempoReward as cls
                else:
                    from rewards.mode import ModeReward as cls
                field = {"tempo": "tempo", "mode": "mode_reward",
                         "acoustic mode": "acoustic_mode_reward",
                         "acoustic tempo": "acoustic_tempo_reward"}[kind]
                if not Path(folder).is_dir():
                    raise SystemUnavailable(f"system {spec.name!r}: no {kind} model at "
                                            f"{folder} (`musicrl train {kind.split()[-1]}`, or "
                                            f"fix '{field}' in --systems)")
                try:
                    reward = cls(folder, combine=combine)
                    if kind == "acoustic tempo":
                        from rewards.tempo import AudioTempoReward

                        reward = AudioTempoReward(reward,
                                                  semantic_dir=Path(spec.weights) / "semantic",
                                                  codec_dir=Path(spec.weights) / "codec")
                except Exception as e:
                    raise SystemUnavailable(f"system {spec.name!r}: cannot load the {kind} "
                                            f"model at {folder}: {e}") from e
                if kind in ("mode", "acoustic mode"):
                    levels = reward.model.cfg.levels
                    if bool(levels) != (kind == "acoustic mode"):
                        raise SystemUnavailable(
                            f"system {spec.name!r}: the mode model at {folder} reads "
                            f"{'codec' if levels else 'semantic'} tokens; it belongs in "
                            f"'{'acoustic_mode_reward' if levels else 'mode_reward'}'")
                self._rewards[key] = reward
            return self._rewards[key]

    def _score(self, spec: SystemSpec, stage: str) -> Any:
        """What ranks stage S's candidates (``stage="semantic"``: the tempo reward, the mode
        reward) or stage A's renderings (``"acoustic"``: the mode model on codec tokens, the
        tempo of the audio): one, or their product (:class:`rewards.combine.ProductScore`)."""
        if stage == "semantic":
            parts = [("tempo", spec.tempo if spec.tempo != "none" else "", spec.tempo_combine),
                     ("mode", spec.mode_reward, spec.mode_combine)]
        else:
            parts = [("acoustic mode", spec.acoustic_mode_reward, spec.acoustic_mode_combine),
                     ("acoustic tempo", spec.acoustic_tempo_reward, spec.acoustic_tempo_combine)]
        scores = [self._reward(spec, kind, folder, combine)
                  for kind, folder, combine in parts if folder]
        if len(scores) == 1:
            return scores[0]
        from rewards.combine import ProductScore

        return ProductScore(scores)

    def generate(self, name: str, prompts: list[str], seconds: float, seed: int, *,
                 guidance: float | None = None, temperature: float | None = None,
                 mix: float | None = None) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Runs system ``name``; returns ``(audio [b, n] float32, sample_rate, settings)``.

        ``guidance``/``temperature`` default to the system's own; ``mix`` is passed only to
        the merge system. The settings dict (what was actually used) is stored with the clip.
        """
        spec = self.spec(name)
        gen = self.get(name)
        g = spec.guidance if guidance is None else float(guidance)
        t = spec.temperature if temperature is None else float(temperature)
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if mix is not None:
            if self.merge is None or self.merge.system != name:
                raise ValueError(f"system {name!r} has no quality/diversity mix")
            kw["mix"] = extra["mix"] = float(mix)
        if spec.best_of > 1:
            kw["best_of"] = spec.best_of
        if spec.semantic_best_of > 1:
            kw["semantic_best_of"] = spec.semantic_best_of
            kw["semantic_score"] = self._score(spec, "semantic")
        if spec.acoustic_best_of > 1:
            kw["acoustic_best_of"] = spec.acoustic_best_of
            kw["acoustic_score"] = self._score(spec, "acoustic")
        audio = np.asarray(gen.generate(list(prompts), seconds, int(seed), g, t, **kw),
                           dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] != len(prompts) or audio.shape[1] == 0:
            raise SystemUnavailable(f"system {name!r} returned audio of shape {audio.shape}; "
                                    f"expected ({len(prompts)}, samples)")
        if not np.isfinite(audio).all():
            raise SystemUnavailable(f"system {name!r} returned non-finite samples")
        return audio, int(gen.sample_rate), spec.settings(guidance=g, temperature=t, seed=int(seed),
                                                          seconds=float(seconds), **extra)
