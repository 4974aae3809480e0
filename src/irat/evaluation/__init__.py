"""Robust evaluation: per-sample correctness under each attack, the worst case over attacks,
per-class accuracy, sanity checks; results as JSON and Markdown."""

from irat.evaluation.cache import AttackCache
from irat.evaluation.evaluate import EvalResult, evaluate
from irat.evaluation.robust import correct_under
from irat.evaluation.sanity import check_accuracies, check_eps_sweep

__all__ = ["AttackCache", "EvalResult", "evaluate", "correct_under", "check_accuracies", "check_eps_sweep"]
