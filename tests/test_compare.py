"""The comparison page's series: a layer sweep's reports join into one line; two runs of one model
over the same layers (other settings) stay two lines."""

import json

import pandas as pd

from neurons.compare import load_report, merge_series, write_comparison


def fake_report(folder, model, layers, acc, depth=4):
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"model": model, "corpus": "ewt", "layers_in_model": depth}))
    (folder / "index.html").write_text("<html></html>")
    pd.DataFrame({"layer": layers, "source": "tag", "task": "upos", "accuracy": acc,
                  "selectivity": [a - 0.5 for a in acc]}).to_csv(folder / "probing.csv", index=False)
    pd.DataFrame({"layer": layers, "tag_set": "upos", "concept_share": acc}).to_csv(folder / "alignment.csv", index=False)
    return folder


def test_layer_sweep_reports_join_and_overlapping_runs_stay_apart(tmp_path):
    a = fake_report(tmp_path / "m-ewt-layer0", "m", [0], [0.9])
    b = fake_report(tmp_path / "m-ewt-layer3", "m", [3], [0.8])
    c = fake_report(tmp_path / "m-ewt-other", "m", [0, 3], [0.5, 0.6])  # same model, same layers: other settings
    d = fake_report(tmp_path / "g-ewt", "g", [0, 1, 2, 3, 4, 5], [0.7] * 6, depth=6)
    series = {s["name"]: s for s in merge_series([load_report(f) for f in (a, b, c, d)])}
    assert set(series) == {"m-ewt", "m-ewt-other", "g-ewt"}
    joined = series["m-ewt"]["probing"].sort_values("layer")
    assert joined["layer"].tolist() == [0, 3] and joined["accuracy"].tolist() == [0.9, 0.8]
    assert series["m-ewt-other"]["probing"]["accuracy"].tolist() == [0.5, 0.6]
    index = write_comparison([a, b, c, d], tmp_path / "page").read_text()
    assert "relative depth" in index  # depths 4 and 6 differ
    assert all(n in index for n in ("m-ewt-layer0", "m-ewt-layer3", "m-ewt-other", "g-ewt"))


def test_reports_without_report_json_are_named_by_folder(tmp_path):
    a = fake_report(tmp_path / "x", "m", [0, 1], [0.9, 0.8])
    (a / "report.json").unlink()
    (r,) = merge_series([load_report(a)])
    assert r["name"] == "x" and r["depth"] == 2


def test_a_series_keeps_its_colour_in_every_panel(tmp_path, monkeypatch):
    import neurons.plots as plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    panels = {"upos": [("a", [0, 1], [0.1, 0.2]), ("b", [0, 1], [0.3, 0.4])],
              "wordnet": [("b", [0, 1], [0.5, 0.6])]}  # "a" has no wordnet line
    plots.small_multiples(tmp_path / "x.png", panels, "layer", "share")
    colour = {}
    for ax in figs[0].axes:
        for line in ax.get_lines():
            colour.setdefault(line.get_label(), set()).add(line.get_color())
    assert all(len(c) == 1 for c in colour.values()) and colour["a"] != colour["b"]
