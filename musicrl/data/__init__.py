"""Audio corpora: the bundled corpus rendered from music21 scores, users' own
imports, the manifest format, statistics and the training loader."""

from musicrl.data.config import DataConfig, LoaderConfig
from musicrl.data.manifest import Clip, load_clips

__all__ = ["Clip", "DataConfig", "LoaderConfig", "load_clips"]
