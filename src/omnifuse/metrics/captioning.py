"""Captioning metrics from pycocoevalcap: BLEU-1..4, CIDEr-D, ROUGE-L and METEOR.

Tokenisation follows the COCO caption evaluation: the Stanford PTB tokenizer (Java) lowercases
and splits the text, then pycocoevalcap's punctuation tokens are dropped. Without ``java`` on
PATH the pure-Python :func:`simple_tokenize` is used instead and METEOR (also Java) is reported as
``None``; both events are logged.
"""

from __future__ import annotations

import logging
import shutil
import string
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# pycocoevalcap ships no type information; its scorers are used as black boxes.
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer

from omnifuse.metrics._common import check_same_length, check_strings

logger = logging.getLogger(__name__)

Tokenizer = Literal["auto", "ptb", "simple"]
TOKENIZERS: tuple[str, ...] = ("auto", "ptb", "simple")
_PTB_JAR = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)


class CaptionMetricError(RuntimeError):
    """A Java helper (PTB tokenizer) failed; the message says how and how to avoid it."""


@dataclass(frozen=True)
class CaptionResult:
    """Corpus-level captioning metrics.

    Attributes:
        bleu: BLEU-1..4 (pycocoevalcap, corpus level, "closest" reference length); index 3 is
            BLEU-4.
        cider: CIDEr-D (pycocoevalcap ``Cider``: x10 scale, clipped counts, length penalty);
            ``None`` for fewer than two images, where its IDF weights are all zero.
        rouge_l: Mean over images of sentence ROUGE-L F (beta 1.2, best reference).
        meteor: METEOR 1.5 corpus score, or ``None`` when disabled or Java is unavailable/failed.
        tokenizer: ``"ptb"`` or ``"simple"``: the tokenizer actually used.
        meteor_skipped: Why ``meteor`` is ``None`` (``None`` when it was computed).
    """

    bleu: tuple[float, float, float, float]
    cider: float | None
    rouge_l: float
    meteor: float | None
    tokenizer: str
    meteor_skipped: str | None = None

    @property
    def bleu4(self) -> float:
        """BLEU-4, the headline BLEU number."""
        return self.bleu[3]

    def scalars(self) -> dict[str, float | None]:
        """Flat view: ``bleu_1`` .. ``bleu_4``, ``cider``, ``rouge_l``, ``meteor``."""
        out: dict[str, float | None] = {f"bleu_{n + 1}": v for n, v in enumerate(self.bleu)}
        out.update(cider=self.cider, rouge_l=self.rouge_l, meteor=self.meteor)
        return out


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (needed by the PTB tokenizer and METEOR)."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Pure-Python stand-in for the PTB tokenizer: lowercase, drop ASCII punctuation, split.

    Unlike PTB it deletes punctuation inside words instead of splitting there ("man's" -> "mans"
    where PTB gives "man 's"; "don't" -> "dont" vs "do n't"; "well-known" -> "wellknown" vs
    "well-known"), so scores on punctuated text differ slightly from the official ones.

    Returns:
        Space-separated tokens.
    """
    return " ".join(text.lower().translate(_PUNCTUATION_TABLE).split())


def _run_ptb(captions: list[str], java: str, timeout_s: float) -> list[str]:
    """Runs the Stanford PTB tokenizer once over all captions; returns one output line each."""
    with tempfile.TemporaryDirectory(prefix="omnifuse-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_text("".join(f"{caption}\n" for caption in captions), encoding="utf-8")
        command = [java, "-cp", str(_PTB_JAR), "edu.stanford.nlp.process.PTBTokenizer"]
        command += ["-preserveLines", "-lowerCase", "-encoding", "utf-8", str(path)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as error:
            raise CaptionMetricError(
                f"PTB tokenizer timed out after {timeout_s} s; raise java_timeout_s or pass "
                "tokenizer='simple'"
            ) from error
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")[-500:]
        raise CaptionMetricError(
            f"PTB tokenizer exited with code {done.returncode} ({' '.join(command[:4])}): "
            f"{stderr}; pass tokenizer='simple' to avoid Java"
        )
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(captions):
        raise CaptionMetricError(
            f"PTB tokenizer returned {len(lines)} lines for {len(captions)} captions"
        )
    return lines[: len(captions)]


def ptb_tokenize(captions: Sequence[str], timeout_s: float = 120.0) -> list[str]:
    """COCO-style tokenisation with the Stanford PTB tokenizer shipped in pycocoevalcap.

    Same command and punctuation filter as ``pycocoevalcap.tokenizer.PTBTokenizer``, but run
    with a timeout, a private temporary file (upstream writes into site-packages) and errors
    that say what failed.

    Args:
        captions: Raw captions.
        timeout_s: Limit for the Java process.

    Returns:
        One lowercased, space-separated token string per caption.
    """
    java = shutil.which("java")
    if java is None:
        raise CaptionMetricError("the PTB tokenizer needs `java` on PATH; use tokenizer='simple'")
    # One caption per line: internal newlines/tabs would shift every following caption.
    flat = [" ".join(caption.split()) for caption in captions]
    drop = set(ptbtokenizer.PUNCTUATIONS)
    lines = _run_ptb(flat, java, timeout_s)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in drop) for line in lines]


def _resolve_tokenizer(tokenizer: str) -> str:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if tokenizer != "auto":
        return tokenizer
    if java_available():
        return "ptb"
    logger.warning("`java` not on PATH: captions use the pure-Python fallback tokenizer")
    return "simple"


def _tokenize(
    predictions: list[str], references: list[list[str]], tokenizer: str, timeout_s: float
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Tokenises everything in one pass; returns pycocoevalcap-style (gts, res) dicts."""
    flat = predictions + [ref for refs in references for ref in refs]
    if tokenizer == "ptb":
        tokens = ptb_tokenize(flat, timeout_s)
    else:
        tokens = [simple_tokenize(text) for text in flat]
    res = {i: [tokens[i]] for i in range(len(predictions))}
    gts: dict[int, list[str]] = {}
    start = len(predictions)
    for i, refs in enumerate(references):
        gts[i] = tokens[start : start + len(refs)]
        start += len(refs)
    return gts, res


def _shutdown_meteor(scorer: Any) -> str:
    """Stops the METEOR JVM; returns the tail of its stderr for error messages."""
    process: subprocess.Popen[bytes] = scorer.meteor_p
    process.kill()
    process.wait(timeout=10)
    stderr = process.stderr.read().decode("utf-8", "replace")[-500:] if process.stderr else ""
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    # Upstream compute_score does not release its lock when the JVM dies mid-call, and its
    # __del__ acquires that lock: a fresh lock keeps garbage collection from hanging.
    scorer.lock = threading.Lock()
    return stderr


def run_meteor(
    gts: dict[int, list[str]], res: dict[int, list[str]], timeout_s: float = 120.0
) -> tuple[float | None, str | None]:
    """Corpus METEOR with pycocoevalcap's ``Meteor``, never raising.

    Args:
        gts: Tokenised references per image id.
        res: One tokenised hypothesis (in a list) per image id.
        timeout_s: Limit for starting the JVM and scoring.

    Returns:
        ``(score, None)`` on success, ``(None, reason)`` otherwise (the reason is also logged).
    """
    try:
        scorer = Meteor()
    except OSError as error:
        reason = f"could not start METEOR: {error}"
        logger.warning(reason)
        return None, reason
    outcome: dict[str, Any] = {}

    def score() -> None:
        try:
            outcome["score"] = float(scorer.compute_score(gts, res)[0])
        except Exception as error:  # any JVM-side failure surfaces as some exception here
            outcome["error"] = error

    worker = threading.Thread(target=score, name="omnifuse-meteor", daemon=True)
    worker.start()
    worker.join(timeout_s)
    timed_out = worker.is_alive()  # read before the kill below makes the worker fail fast
    stderr = _shutdown_meteor(scorer)
    worker.join(10)
    if "score" in outcome:
        return outcome["score"], None
    if timed_out:
        reason = f"METEOR timed out after {timeout_s} s"
    else:
        reason = f"METEOR failed ({outcome['error']!r}); java stderr: {stderr.strip() or '<none>'}"
    logger.warning(reason)
    return None, reason


def _check_references(references: Sequence[Sequence[str] | str]) -> list[list[str]]:
    out: list[list[str]] = []
    for index, refs in enumerate(references):
        refs_list = [refs] if isinstance(refs, str) else list(refs)
        if len(refs_list) == 0:
            raise ValueError(f"references[{index}] is empty; every image needs a reference")
        out.append(check_strings(refs_list, f"references[{index}]"))
    return out


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str] | str],
    tokenizer: Tokenizer = "auto",
    meteor: bool = True,
    java_timeout_s: float = 120.0,
) -> CaptionResult:
    """BLEU-1..4, CIDEr-D, ROUGE-L and METEOR of one generated caption per image.

    Args:
        predictions: One generated caption per image.
        references: Per image, its reference captions (a single string counts as one).
        tokenizer: ``"ptb"`` (Java, official), ``"simple"`` (pure Python) or ``"auto"``: PTB
            when ``java`` is on PATH, else simple.
        meteor: Compute METEOR; it starts a JVM (several seconds), so disable it for quick
            validation loops.
        java_timeout_s: Limit for each Java process.

    Returns:
        The metrics.
    """
    hyps = check_strings(predictions, "predictions")
    refs = _check_references(references)
    check_same_length(hyps, refs)
    used = _resolve_tokenizer(tokenizer)
    gts, res = _tokenize(hyps, refs, used, java_timeout_s)
    bleu = [float(v) for v in Bleu(4).compute_score(gts, res, verbose=0)[0]]
    cider: float | None = None
    if len(hyps) > 1:
        cider = float(Cider().compute_score(gts, res)[0])
    else:
        logger.warning("CIDEr needs at least two images (IDF over one image is zero): None")
    meteor_score: float | None = None
    skipped: str | None = "disabled (meteor=False)"
    if meteor and java_available():
        meteor_score, skipped = run_meteor(gts, res, java_timeout_s)
    elif meteor:
        skipped = "`java` not on PATH"
        logger.warning("METEOR skipped: %s", skipped)
    return CaptionResult(
        bleu=(bleu[0], bleu[1], bleu[2], bleu[3]),
        cider=cider,
        rouge_l=float(Rouge().compute_score(gts, res)[0]),
        meteor=meteor_score,
        tokenizer=used,
        meteor_skipped=skipped,
    )
