"""Per-instance analysis of a run: records of all epochs as arrays, the figures (the only place
irat uses matplotlib), confusion matrices under attack, and a Markdown report.

    from irat.analysis import analyze
    analyze("runs/at")            # → runs/at/analysis/report.md and its PNG figures
"""

from irat.analysis.confusion import adversarial_confusion, adversarial_predictions, confusion_matrix
from irat.analysis.difficulty import d_distance, difficulty
from irat.analysis.records import AnalysisError, Records, load_records, record_files
from irat.analysis.report import analyze, class_names
from irat.analysis.run import LoadedRun, load_run

__all__ = [
    "AnalysisError",
    "LoadedRun",
    "Records",
    "adversarial_confusion",
    "adversarial_predictions",
    "analyze",
    "class_names",
    "confusion_matrix",
    "d_distance",
    "difficulty",
    "load_records",
    "load_run",
    "record_files",
]
