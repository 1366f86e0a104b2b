"""The CO lab: catastrophic overfitting induced on the embedded digits, every detector recorded and scored.

Run it with `python -m experiments.co_lab.report all ...` (see experiments/co_lab/report.py and docs/co_lab.md).
"""
