"""The studies behind the figures in docs/, one folder per study; run from the repository root.

Not part of the robustrain package (not in the wheel); robustrain never imports them. Each study states its one
command in its module docstring, e.g. `python -m experiments.stop_study.report all`.
"""
