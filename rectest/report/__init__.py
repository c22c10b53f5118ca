"""Reports of a simulation: metrics.csv, summary.json, table.md, figures, TensorBoard, console text.

Everything here is a pure function of the long-format metrics frame (one row per replica and logged
step; see :func:`rectest.report.frames.history_frame`) or of the summary dict built from it. Figures and
TensorBoard helpers live in :mod:`rectest.report.figures` and :mod:`rectest.report.tensorboard` and are
not imported here (they pull in matplotlib and TensorBoard).
"""

from rectest.report.console import console_summary
from rectest.report.frames import history_frame
from rectest.report.layout import METRICS_FILE, SUMMARY_FILE, TABLE_FILE
from rectest.report.metrics_log import MetricsLog, read_metrics
from rectest.report.paper import paper_reference
from rectest.report.run_reports import write_run_reports
from rectest.report.summary import read_summary, summarize, write_summary
from rectest.report.tables import write_table

__all__ = [
    "METRICS_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "MetricsLog",
    "console_summary",
    "history_frame",
    "paper_reference",
    "read_metrics",
    "read_summary",
    "summarize",
    "write_run_reports",
    "write_summary",
    "write_table",
]
