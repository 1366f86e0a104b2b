"""Speed benchmarks behind docs/benchmarks.md; run from the repository root. Not part of the robustrain package.

python -m benchmarks.run_all [--threads 1] [--device cuda]     every ratio, JSON and markdown in docs/results/
python -m benchmarks.aliasing | benchmarks.training | benchmarks.spatial     one part each
"""
