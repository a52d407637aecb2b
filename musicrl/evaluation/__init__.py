"""Evaluation: metrics and reports (DESIGN §12).

So far: the codec on held-out clips beside Opus (:mod:`musicrl.evaluation.codec`,
``musicrl eval codec``); FAD with a fixed-sample-size protocol and FAD∞
(:mod:`~musicrl.evaluation.fad`) over any ``embed(wavs) -> [n, d]``, by default
the fixed ``handcrafted-v1`` features (:mod:`~musicrl.evaluation.features`);
attribute estimators independent of the rewards, with their accuracy on real
test clips (:mod:`~musicrl.evaluation.estimators`, ``musicrl eval estimators``).
MuLan cycle consistency and diversity follow with the models they measure.
"""

from musicrl.evaluation.codec import code_perplexity, evaluate_codec, format_table, write_report
from musicrl.evaluation.fad import (
    FadInfinity,
    FadResult,
    fad,
    fad_fixed,
    fad_infinity,
    frechet_distance,
)
from musicrl.evaluation.features import EMBEDDING_NAME, embed_handcrafted
from musicrl.evaluation.opus import OpusUnavailable, check_opus, opus_roundtrip

__all__ = ["evaluate_codec", "code_perplexity", "format_table", "write_report",
           "OpusUnavailable", "check_opus", "opus_roundtrip",
           "fad", "fad_fixed", "fad_infinity", "frechet_distance", "FadResult", "FadInfinity",
           "EMBEDDING_NAME", "embed_handcrafted"]
