"""Does the aliasing stop end FGSM training before robustness is lost? study.py trains and scores, report.py runs it.

python -m experiments.stop_study.report all --out runs/stop_study --docs docs/results/stop_study
"""
