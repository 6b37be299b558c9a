"""python -m fusion.evaluate: metrics (and comparisons) for a prediction file."""
import numpy as np
import pandas as pd

from fusion.evaluate import evaluate_predictions, main

CLASSES = ["metastatic", "lymphoma", "benign"]


def _predictions(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rows = []
    for modality, strength in (("2d", 1.0), ("elastography", 2.5)):
        z = rng.normal(0, 1, (n, 3))
        z[np.arange(n), y] += strength
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        f = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "fold": np.arange(n) % 3,
                          "split": "external", "y_true": np.asarray(CLASSES)[y], "model": "resnet18",
                          "modality": modality})
        f[[f"p_{c}" for c in CLASSES]] = p
        rows.append(f)
    frame = pd.concat(rows, ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def test_writes_metrics_per_fold_and_comparisons(tmp_path, capsys):
    frame = _predictions(tmp_path / "p.csv")
    out = tmp_path / "ev"
    assert main([str(tmp_path / "p.csv"), "--out", str(out), "--n-boot", "50", "--compare"]) == 0
    printed = capsys.readouterr().out
    assert "elastography" in printed and "n = 60 patients" in printed
    got = pd.read_csv(out / "metrics.csv", keep_default_na=False, na_values=[""])
    want = evaluate_predictions(frame, CLASSES, n_boot=50, seed=0)
    np.testing.assert_allclose(got["estimate"].to_numpy(float), want["estimate"].to_numpy(float), equal_nan=True)
    assert set(pd.read_csv(out / "metrics_by_fold.csv")["fold"]) == {0, 1, 2}
    cmp = pd.read_csv(out / "comparisons.csv")
    assert len(cmp) and "p_holm" in cmp


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    pd.DataFrame({"patient_id": ["a"], "y_true": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main([str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "p_<class>" in err and err.count("\n") == 1
    (tmp_path / "empty.csv").write_text("")
    assert main([str(tmp_path / "empty.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable prediction csv" in capsys.readouterr().err
