"""Metrics of the before/after report: how close the answers are to the reference jokes, how varied
they are, how much they copy training answers, and whether the model prefers each image's own joke.

Text is compared character by character (Chinese has no spaces; one character is one unit). BLEU
comes from sacrebleu with its ``zh`` tokenizer (each CJK character a token), not a formula of ours.
Every function takes plain lists of strings or numbers, so each is tested on hand-made cases.
"""
from __future__ import annotations

from typing import Optional, Sequence

COPY_THRESHOLD = 0.9  # char ROUGE-L F1 with a training answer at or above this = a copy


def _lcs_length(a: str, b: str) -> int:
    """Longest common subsequence length, O(len(a) * len(b)) with one row of memory."""
    row = [0] * (len(b) + 1)
    for ca in a:
        previous_diagonal = 0
        for j, cb in enumerate(b, start=1):
            saved = row[j]
            row[j] = previous_diagonal + 1 if ca == cb else max(row[j], row[j - 1])
            previous_diagonal = saved
    return row[-1]


def char_rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 over characters (whitespace ignored): 1.0 for identical texts, 0.0 for disjoint."""
    hyp, ref = ''.join(hypothesis.split()), ''.join(reference.split())
    if not hyp or not ref:
        return 0.0
    lcs = _lcs_length(hyp, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_char_rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> Optional[float]:
    if not hypotheses:
        return None
    return sum(char_rouge_l(h, r) for h, r in zip(hypotheses, references, strict=True)) / len(hypotheses)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Optional[float]:
    """Corpus BLEU (0-100) with sacrebleu's ``zh`` tokenizer: one reference per answer."""
    import sacrebleu

    if not hypotheses:
        return None
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize='zh').score


def distinct_n(answers: Sequence[str], n: int) -> Optional[float]:
    """Distinct character n-grams over all n-grams of all answers (whitespace ignored); None when
    the answers hold no n-gram at all."""
    grams = [a[i:i + n] for a in (''.join(x.split()) for x in answers) for i in range(len(a) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def mean_length(answers: Sequence[str]) -> Optional[float]:
    """Mean answer length in characters (whitespace ignored)."""
    return sum(len(''.join(a.split())) for a in answers) / len(answers) if answers else None


def copy_rate(answers: Sequence[str], training_answers: Sequence[str],
              threshold: float = COPY_THRESHOLD) -> Optional[float]:
    """Share of answers equal or nearly equal (char ROUGE-L >= threshold) to some training answer:
    memorisation, not humour. None without training answers to compare with."""
    if not answers or not training_answers:
        return None
    unique = list(dict.fromkeys(training_answers))  # tutorial data repeats one answer 10,000 times
    copied = sum(any(char_rouge_l(a, t) >= threshold for t in unique) for a in answers)
    return copied / len(answers)


def choice_correct(scores: Sequence[float]) -> bool:
    """``scores[0]`` is the likelihood of the item's own reference, the rest of other items'
    references: right when the own one is strictly the most likely."""
    return len(scores) > 1 and all(scores[0] > s for s in scores[1:])


def choice_accuracy(score_lists: Sequence[Sequence[float]]) -> Optional[float]:
    """Share of items whose own reference is the most likely (see :func:`choice_correct`)."""
    scored = [s for s in score_lists if s is not None and len(s) > 1]
    return sum(map(choice_correct, scored)) / len(scored) if scored else None


METRICS = ('rouge_l', 'bleu', 'distinct_1', 'distinct_2', 'mean_length', 'copy_rate', 'choice_accuracy')


def stage_metrics(answers: Sequence[str], references: Sequence[Optional[str]], training_answers: Sequence[str],
                  choice_scores: Sequence[Optional[Sequence[float]]]) -> dict:
    """All metrics of one group of items at one stage; reference-based ones use the items that have
    a reference (free questions have none)."""
    pairs = [(a, r) for a, r in zip(answers, references, strict=True) if r]
    hyps, refs = [a for a, _ in pairs], [r for _, r in pairs]
    return dict(rouge_l=mean_char_rouge_l(hyps, refs), bleu=corpus_bleu(hyps, refs),
                distinct_1=distinct_n(answers, 1), distinct_2=distinct_n(answers, 2),
                mean_length=mean_length(answers), copy_rate=copy_rate(answers, training_answers),
                choice_accuracy=choice_accuracy(choice_scores))
