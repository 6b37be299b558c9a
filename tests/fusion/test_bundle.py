"""Model bundles: fit on all patients, save -> load -> identical probabilities, predict new patients."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_training_cohort import TINY_ARGS, write_tiny_cohort


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fusion.train import main

    root = tmp_path_factory.mktemp("bundle")
    cohort = write_tiny_cohort(root / "tiny", n=36)
    out = root / "run"
    assert main([str(cohort), *TINY_ARGS, "--modalities", "2d", "elastography", "--final", "--out", str(out)]) == 0
    return cohort, out


def test_bundle_loads_with_weights_only_and_reproduces_its_probabilities(trained, tmp_path):
    from fusion.bundle import load_bundle

    cohort, out = trained
    path = out / "model_bundle.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)   # no pickled code
    assert raw["format"] == 1 and raw["fusion"] == "late"
    model = load_bundle(path)
    assert model.classes == ["metastatic", "lymphoma", "benign"] and model.modalities == ["2d", "elastography"]
    perf = model.cv_performance
    perf = perf[perf["metric"] == "auc"]
    assert len(perf) == 1 and perf["ci_low"].iloc[0] <= perf["estimate"].iloc[0] <= perf["ci_high"].iloc[0]
    assert len(model.meta["training_data_sha256"]) == 64 and model.meta["versions"]["torch"]
    a, problems = model.predict_table(cohort)
    copy = tmp_path / "copy.pt"
    model.save(copy)
    b, _ = load_bundle(copy).predict_table(cohort)
    pcols = [c for c in a.columns if c.startswith("p_")]
    assert np.array_equal(a[pcols].to_numpy(), b[pcols].to_numpy())
    assert len(a) == 36 and np.allclose(a[pcols].sum(axis=1), 1)
    # the patients whose elastography cell is empty are predicted, and say so
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    empty = table.loc[table["image_elastography"].isna(), "patient_id"]
    assert set(a.loc[a["missing"] == "elastography", "patient_id"]) == set(empty)
    # contributions add up to prediction - reference for the predicted class
    contrib = a[[c for c in a.columns if c.startswith("contribution_")]].sum(axis=1)
    assert set(c.split("_", 1)[1] for c in a.columns if c.startswith("contribution_")) == {"2d", "elastography",
                                                                                          "clinical"}
    assert np.isfinite(contrib).all()


def test_bundles_of_another_layout_version_or_schema_are_refused_with_one_line(trained, tmp_path):
    from analysis.errors import ConfigError
    from analysis.schema import load_schema
    from fusion.bundle import BUNDLE_FORMAT, load_bundle

    cohort, out = trained
    raw = torch.load(out / "model_bundle.pt", map_location="cpu", weights_only=True)

    def saved(name, **changes):
        data = {**raw, **changes}
        torch.save(data, tmp_path / name)
        return tmp_path / name

    with pytest.raises(ConfigError, match=f"bundle layout 99 is not the layout {BUNDLE_FORMAT}"):
        load_bundle(saved("layout.pt", format=99))
    with pytest.raises(ConfigError, match="written by toolkit version 9.4.0 and this is .*same major.minor"):
        load_bundle(saved("version.pt", meta={**raw["meta"], "toolkit_version": "9.4.0"}))
    damaged = {k: v for k, v in raw.items() if k != "cnn_states"}
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(ConfigError, match="damaged model bundle: no 'cnn_states' entry"):
        load_bundle(tmp_path / "damaged.pt")
    (tmp_path / "truncated.pt").write_bytes((out / "model_bundle.pt").read_bytes()[:1000])
    with pytest.raises(ConfigError, match="not a model bundle of this toolkit"):
        load_bundle(tmp_path / "truncated.pt")
    # another schema: a level added to one variable
    other = tmp_path / "other_schema.yaml"
    text = (cohort.parent / "cohort_schema.yaml").read_text()
    assert "irregular" in text
    other.write_text(text.replace("irregular", "irregular, spiculated", 1))
    assert load_bundle(out / "model_bundle.pt", schema=cohort.parent / "cohort_schema.yaml")
    with pytest.raises(ConfigError, match="trained with another schema"):
        load_bundle(out / "model_bundle.pt", schema=load_schema(other))
    # each refusal is one line on the command line
    from fusion.predict import main

    assert main([str(tmp_path / "version.pt"), str(cohort), "--out", str(tmp_path / "p")]) == 2


def test_bad_rows_and_images_are_reported_and_the_others_predicted(trained, tmp_path):
    from fusion.bundle import load_bundle

    cohort, out = trained
    model = load_bundle(out / "model_bundle.pt")
    folder = tmp_path / "new"
    shutil.copytree(cohort.parent, folder)
    table = pd.read_csv(folder / "cohort.csv", dtype=str).drop(columns=["group"])
    table.loc[1, "margin"] = "irreglar"                     # bad clinical value -> row left out
    table.loc[2, "patient_id"] = ""                         # no id -> left out
    (folder / table.loc[3, "image_2d"]).write_bytes(b"not a png")   # unreadable -> predicted without 2d
    table.to_csv(folder / "new.csv", index=False)
    preds, problems = model.predict_table(folder / "new.csv")
    assert len(preds) == len(table) - 2
    assert set(problems["row"]) == {3, 4, 5}
    assert any("did you mean 'irregular'" in p for p in problems["problem"])
    row = preds[preds["patient_id"] == table.loc[3, "patient_id"]]
    assert "2d" in row["missing"].iloc[0]


def test_predict_cli_one_patient_by_option_and_refusals(trained, tmp_path, capsys):
    from fusion.predict import main

    cohort, out = trained
    table = pd.read_csv(cohort, dtype=str)
    img = cohort.parent / table.loc[0, "image_2d"]
    rc = main([str(out / "model_bundle.pt"), "--image", f"2d={img}", "--clinical", "age=54", "--out",
               str(tmp_path / "one")])
    assert rc == 0
    pred = pd.read_csv(tmp_path / "one" / "predictions.csv")
    assert len(pred) == 1 and pred["missing"].iloc[0] == "elastography"
    # Grad-CAM on request: one overlay per patient and image present, for the predicted class
    assert main([str(out / "model_bundle.pt"), str(cohort), "--gradcam", "--out", str(tmp_path / "cam")]) == 0
    cams = sorted(p.name for p in (tmp_path / "cam" / "gradcam").glob("*.png"))
    n_images = int(table["image_2d"].notna().sum() + table["image_elastography"].notna().sum())
    assert len(cams) == n_images and f"{table.loc[0, 'patient_id']}_2d.png" in cams
    from PIL import Image

    with Image.open(tmp_path / "cam" / "gradcam" / cams[0]) as im:
        assert im.mode == "RGB" and min(im.size) >= 256
    assert main([str(out / "model_bundle.pt"), "--image", "elasto=x.png"]) == 2
    assert "did you mean 'elastography'" in capsys.readouterr().err
    # a training checkpoint is not a bundle
    ckpt = next((out / "checkpoints").rglob("model.pt"))
    assert main([str(ckpt), str(cohort)]) == 2
    assert "not a model bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_embedding_bundle_predicts_and_round_trips(tmp_path):
    from fusion.bundle import load_bundle
    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=36)
    out = tmp_path / "emb"
    assert main([str(cohort), *TINY_ARGS, "--modalities", "2d", "elastography", "--fusion", "embedding", "--final",
                 "--out", str(out)]) == 0
    model = load_bundle(out / "model_bundle.pt")
    assert model.fusion == "embedding" and set(model.blocks) == {"2d", "elastography"}
    a, problems = model.predict_table(cohort)
    b, _ = load_bundle(model.save(tmp_path / "copy.pt")).predict_table(cohort)
    pcols = [c for c in a.columns if c.startswith("p_")]
    assert len(a) == 36 and problems.empty and np.array_equal(a[pcols].to_numpy(), b[pcols].to_numpy())
    assert model.cv_performance["model"].eq("embedding_lr").all()


def test_joint_bundle_matches_the_trained_network_round_trips_and_explains(tmp_path):
    """--fusion joint --final: the bundle predicts what the joint network trained on all patients predicts on
    the same rows (images decoded and clinical values encoded as in training), round-trips bit for bit,
    gives Shapley contributions per source that add up, and serves Grad-CAM per branch."""
    from fusion.bundle import load_bundle
    from fusion.dataset import MultimodalDataset
    from fusion.joint import JointData, encode_clinical, predict_proba
    from fusion.splits import inner_validation_split
    from fusion.train import load_table, main
    from fusion.transforms import build_transform

    cohort = write_tiny_cohort(tmp_path / "tiny", n=36)
    out = tmp_path / "joint"
    assert main([str(cohort), *TINY_ARGS, "--modalities", "2d", "elastography", "--fusion", "joint", "--final",
                 "--out", str(out)]) == 0
    raw = torch.load(out / "model_bundle.pt", map_location="cpu", weights_only=True)
    assert raw["fusion"] == "joint" and raw["head"]["fusion"] == "concat"
    model = load_bundle(out / "model_bundle.pt")
    assert model.cv_performance["model"].eq("joint_concat").all() and len(model.cv_performance)
    a, problems = model.predict_table(cohort)
    assert problems.empty and len(a) == 36
    b, _ = load_bundle(model.save(tmp_path / "copy.pt")).predict_table(cohort)
    pcols = [f"p_{c}" for c in model.classes]
    assert np.array_equal(a[pcols].to_numpy(), b[pcols].to_numpy())

    # the same rows through the training code path: MultimodalDataset + encode_clinical on the final training rows
    table, schema, _ = load_table(str(cohort))
    ds = MultimodalDataset(table, schema, modalities=["2d", "elastography"], size=16, progress=False)
    ids, labels = np.asarray(ds.patient_ids, dtype=object), ds.labels.numpy()
    train_idx, _ = inner_validation_split(np.arange(len(ids)), ids, labels, 0.2, 0)
    data = JointData({m: ds.tensors(m) for m in ds.modalities}, ds.mask, encode_clinical(ds.clinical, ds.schema,
                                                                                          train_idx), labels)
    direct = predict_proba(model._joint_net(), data, transform={m: build_transform("none", train=False,
                                                                                   channels=ds.channels[m])
                                                                for m in ds.modalities}, channels_last=False)
    assert np.allclose(a[pcols].to_numpy(), direct, atol=1e-5)

    # patients without elastography are predicted from the other sources, and say so
    frame = pd.read_csv(cohort, dtype={"patient_id": str})
    assert set(a.loc[a["missing"] == "elastography", "patient_id"]) == set(frame.loc[frame["image_elastography"]
                                                                                    .isna(), "patient_id"])
    # contributions: one per source, adding up to p(predicted) minus the network with every source off
    ccols = [c for c in a.columns if c.startswith("contribution_")]
    assert {c.split("_", 1)[1] for c in ccols} == {"2d", "elastography", "clinical"}
    k = a["predicted"].map(model.classes.index).to_numpy()
    p_pred = a[pcols].to_numpy()[np.arange(len(a)), k]
    none = predict_proba(model._joint_net(), data, transform={m: build_transform("none", train=False,
                                                                                 channels=ds.channels[m])
                                                              for m in ds.modalities},
                         source_mask=np.zeros(3, bool), channels_last=False)[np.arange(len(a)), k]
    assert np.allclose(a[ccols].sum(axis=1).to_numpy(), p_pred - none, atol=1e-5)

    # Grad-CAM of one branch (the network with the other sources off), as the web app draws it
    from fusion.serve import Limits, Predictor

    predictor = Predictor(model, Limits(256 * 1024, 1_000_000, max_batch=2))
    img = ds.tensors("2d")[0]
    png = predictor.gradcam_png("2d", img, target=0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
