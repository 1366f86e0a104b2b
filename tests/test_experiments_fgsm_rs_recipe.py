"""experiments/fgsm_rs_recipe: the table of the FGSM-RS recipe's seeds, median and spread."""


def test_fgsm_rs_recipe_table_gives_median_and_spread(tmp_path):
    import json

    from experiments.fgsm_rs_recipe.table import read_reports, table

    for i, acc in enumerate([0.7, 0.8, 0.9]):
        d = tmp_path / f"seed{i}" / "version_0"
        d.mkdir(parents=True)
        keys = {"clean": 0.98, "fgsm": 0.9, "pgd_50x10": acc, "autoattack": acc - 0.05}
        (d / "robustness.json").write_text(json.dumps({"accuracy": keys}))
    text = table(read_reports(sorted(tmp_path.iterdir())))
    assert "| **median** | **98.0** | **90.0** | **80.0** | **75.0** |" in text
    assert "| min-max | 98.0-98.0 | 90.0-90.0 | 70.0-90.0 | 65.0-85.0 |" in text
