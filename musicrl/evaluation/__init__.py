"""Evaluation: metrics and reports (DESIGN §12).

So far: the codec on held-out clips beside Opus (:mod:`musicrl.evaluation.codec`,
``musicrl eval codec``). FAD, MuLan cycle consistency, adherence and diversity
follow with the models they measure.
"""

from musicrl.evaluation.codec import code_perplexity, evaluate_codec, format_table, write_report
from musicrl.evaluation.opus import OpusUnavailable, check_opus, opus_roundtrip

__all__ = ["evaluate_codec", "code_perplexity", "format_table", "write_report",
           "OpusUnavailable", "check_opus", "opus_roundtrip"]
