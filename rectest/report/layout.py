"""The names of a run folder's files: the one place that spells them (``RunFolder`` and the reports use them).

Contract (design.md section 3): ``.hydra/``, ``tb/``, ``metrics.csv``, ``summary.json``, ``embeddings/``,
``figures/``, ``table.md``; rectest adds ``config.yaml``, ``checkpoint.pt`` and ``retrain.csv``.
"""

METRICS_FILE = "metrics.csv"  # one row per logged step and replica
SUMMARY_FILE = "summary.json"  # final and time-averaged measures; its presence marks a finished run
TABLE_FILE = "table.md"  # the final values beside the paper's
FIGURES_DIR = "figures"
TB_DIR = "tb"  # TensorBoard event files
CONFIG_FILE = "config.yaml"  # the resolved configuration, to recognise a resume
CHECKPOINT_FILE = "checkpoint.pt"  # the simulation state, written atomically
RETRAIN_FILE = "retrain.csv"  # the learned recommender's error at each retrain
