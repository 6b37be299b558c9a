"""fusion.synthetic: deterministic, consistent with each row, class signal as documented."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from fusion.synthetic import main, synthesize_patient, write_synthetic_images

BASE = {"patient_id": "P0001", "group": "benign", "shape": "oval", "margin": "smooth", "hilum": "present",
        "internal_echo": "hypoechoic", "calcification": "absent", "necrosis": "absent",
        "cdfi_pattern": "hilar", "adler_grade": 2, "elasticity_score": 2, "long_axis_mm": 20.0,
        "short_axis_mm": 10.0}


def _row(**kw):
    return {**BASE, **kw}


def _digest(images):
    return {m: hashlib.sha256(a.tobytes()).hexdigest() for m, a in images.items()}


def test_shapes_dtypes_and_determinism():
    a = synthesize_patient(_row(), size=64)
    assert a["2d"].shape == (64, 64) and a["cdfi"].shape == (64, 64, 3) and a["elastography"].shape == (64, 64, 3)
    assert all(x.dtype == np.uint8 for x in a.values())
    assert _digest(a) == _digest(synthesize_patient(_row(), size=64))
    assert _digest(a) != _digest(synthesize_patient(_row(), size=64, seed=1))
    assert _digest(a) != _digest(synthesize_patient(_row(patient_id="P0002"), size=64))


def _colour_fraction(rgb):
    x = rgb.astype(int)
    return float(((x.max(-1) - x.min(-1)) > 60).mean())


def _centre(img, k=10):
    s = img.shape[0] // 2
    return img[s - k:s + k, s - k:s + k]


def test_elasticity_score_sets_the_colour_of_the_node():
    # blue = hard (score 5), red = soft (score 1); averaged over patients to beat the noise
    def blue_minus_red(score):
        vals = []
        for i in range(8):
            e = _centre(synthesize_patient(_row(patient_id=f"P{i}", elasticity_score=score), size=64)["elastography"])
            vals.append(e[..., 2].astype(float).mean() - e[..., 0].astype(float).mean())
        return np.mean(vals)
    assert blue_minus_red(5) > blue_minus_red(3) > blue_minus_red(1)


def test_cdfi_flow_follows_pattern_and_adler_grade():
    def flow(**kw):
        return np.mean([_colour_fraction(synthesize_patient(_row(patient_id=f"P{i}", **kw), size=64)["cdfi"])
                        for i in range(8)])
    assert flow(cdfi_pattern="avascular", adler_grade=0) < 0.002
    assert flow(cdfi_pattern="mixed", adler_grade=3) > flow(cdfi_pattern="central", adler_grade=1) > 0


def test_bmode_features_are_visible():
    def centre_mean(**kw):
        return np.mean([_centre(synthesize_patient(_row(patient_id=f"P{i}", **kw), size=64)["2d"], 4).mean()
                        for i in range(8)])
    assert centre_mean(hilum="present") > centre_mean(hilum="absent") + 10  # echogenic hilum
    assert centre_mean(hilum="absent", internal_echo="isoechoic") > centre_mean(hilum="absent") + 10
    calc = [int((synthesize_patient(_row(patient_id=f"P{i}", calcification=c, hilum="absent"), size=64)["2d"]
                 == 255).sum()) for i in range(6) for c in ("absent", "present")]
    assert sum(calc[1::2]) > 3 * sum(calc[0::2]) + 5


def test_missing_values_are_tolerated():
    row = _row(elasticity_score=np.nan, adler_grade=None, shape=pd.NA, long_axis_mm=np.nan)
    out = synthesize_patient(row, size=32)
    assert out["elastography"].shape == (32, 32, 3)


def test_writes_files_at_relative_paths_byte_identical_across_runs(tmp_path):
    from analysis.simulate import simulate_cohort
    df = simulate_cohort(n=6, seed=0)
    files = write_synthetic_images(df, root=tmp_path / "a", size=32, progress=False)
    again = write_synthetic_images(df, root=tmp_path / "b", size=32, progress=False)
    n_expected = int(df[["image_2d", "image_cdfi", "image_elastography"]].notna().sum().sum())
    assert len(files) == n_expected
    for f, g in zip(files, again):
        assert f.relative_to(tmp_path / "a") == g.relative_to(tmp_path / "b")
        assert f.read_bytes() == g.read_bytes()
    assert (tmp_path / "a" / df["image_2d"].iloc[0]).is_file()
    bad = df.copy()
    bad.loc[0, "image_2d"] = "../../escape.png"
    with pytest.raises(CohortError, match="points outside"):
        write_synthetic_images(bad, root=tmp_path / "c", size=32, progress=False)


def test_cli_on_the_demo_cohort(tmp_path, capsys):
    from analysis.simulate import simulate_cohort, write_cohort
    path = write_cohort(simulate_cohort(n=4, seed=0), tmp_path / "cohort.xlsx")
    assert main([str(path), "--size", "32", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("wrote ")
    assert (tmp_path / "images" / "2d" / "P0001.png").is_file()
    assert main([str(tmp_path / "missing.xlsx")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow
def test_elastography_carries_most_signal_and_fusion_beats_each_modality():
    """Linear probe (5-fold CV, logistic regression) on simple pixel summaries."""
    import torch
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from analysis.simulate import simulate_cohort
    df = simulate_cohort()
    y = df["group"].map({"metastatic": 0, "lymphoma": 1, "benign": 2}).to_numpy()
    feats = {m: [] for m in ("2d", "cdfi", "elastography")}
    for rec in df.to_dict("records"):
        for m, a in synthesize_patient(rec, size=64).items():
            t = torch.from_numpy(a.astype(np.float32) / 255)
            t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
            pooled = F.adaptive_avg_pool2d(t[..., 16:48, 16:48], 4).flatten().numpy()
            hist = np.concatenate([np.histogram(t[0, c].numpy(), bins=8, range=(0, 1))[0] / 4096
                                   for c in range(t.shape[1])])
            feats[m].append(np.concatenate([pooled, hist]))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    def auc(x):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
        p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
        return roc_auc_score(y, p, multi_class="ovr", average="macro")
    single = {m: auc(np.array(v)) for m, v in feats.items()}
    fused = auc(np.hstack([np.array(v) for v in feats.values()]))
    assert single["elastography"] > max(single["2d"], single["cdfi"])
    assert fused > single["elastography"]
    assert max(single.values()) < 0.99  # no modality is perfect


def test_never_replaces_existing_images_without_overwrite(tmp_path, capsys):
    """Pointed at a real cohort, the generator must not replace a patient's image with a fake one."""
    from analysis.simulate import simulate_cohort, write_cohort
    path = write_cohort(simulate_cohort(n=4, seed=0), tmp_path / "cohort.xlsx")
    real = tmp_path / "images" / "2d" / "P0001.png"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"REAL")
    assert main([str(path), "--size", "32", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exist" in err and "--overwrite" in err
    assert real.read_bytes() == b"REAL"
    assert list((tmp_path / "images").rglob("*.png")) == [real]  # nothing else was written either
    assert main([str(path), "--size", "32", "--no-progress", "--overwrite"]) == 0
    assert real.read_bytes() != b"REAL"
