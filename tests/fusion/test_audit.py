"""fusion.audit: patient overlap, near-duplicate images across splits, pre-processing fitted before the split."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _fake_run(tmp_path, cohort, **cfg_overrides):
    """A run folder with what the audit reads (config.yaml, fold_assignments.csv, run_manifest.json),
    its folds made by fusion.splits exactly as a real run makes them -- no training needed."""
    from fusion.audit import image_table
    from fusion.config import TrainConfig, save_config
    from fusion.provenance import fold_assignments
    from fusion.splits import make_splits

    cfg = TrainConfig(cohort=str(cohort), folds=2, seed=0, **cfg_overrides)
    images, source = image_table(cohort, modalities=cfg.modalities)
    first = images.drop_duplicates("position").sort_values("position")
    ids = first["patient_id"].to_numpy()
    labels = pd.factorize(first["label"])[0]
    folds, holdout = make_splits(cfg, ids, labels, None)
    several = not pd.Series(ids).is_unique
    fa = fold_assignments(folds, ids, holdout, first["image_id"].to_numpy() if several else None)
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    fa.to_csv(run / "fold_assignments.csv", index=False)
    (run / "run_manifest.json").write_text(json.dumps({"data_source": source.to_dict(),
                                                       "modalities": cfg.modalities}), encoding="utf-8")
    return run, fa


def test_hamming_matrix_equals_imagehash_differences():
    import imagehash

    from fusion.audit import hamming_matrix

    rng = np.random.default_rng(0)
    hexes = ["".join(rng.choice(list("0123456789abcdef"), 16)) for _ in range(40)]
    d = hamming_matrix(hexes, chunk=7)
    ref = np.array([[imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b) for b in hexes] for a in hexes])
    assert (d == ref).all() and (np.diag(d) == 0).all()


def test_a_copied_image_of_another_patient_is_listed_across_splits(tmp_path):
    from tiny_training_cohort import write_tiny_cohort

    from fusion.audit import audit_run

    cohort = write_tiny_cohort(tmp_path / "tiny", n=24, size=32)
    run, fa = _fake_run(tmp_path, cohort, modalities=["2d"])
    fold0 = fa[fa["fold"] == 0]
    a = fold0.loc[fold0["role"] == "train", "patient_id"].iloc[0]
    b = fold0.loc[fold0["role"] == "test", "patient_id"].iloc[0]
    table = pd.read_csv(cohort)
    path = lambda p: cohort.parent / table.loc[table["patient_id"] == p, "image_2d"].iloc[0]  # noqa: E731
    shutil.copyfile(path(a), path(b))  # patient b's image is patient a's, re-saved
    result = audit_run(run)
    cross = result.cross_split
    pair = cross[cross["patient_a"].isin([a, b]) & cross["patient_b"].isin([a, b])]
    assert len(pair) == 2  # both folds: in fold 0 train vs test, in fold 1 the other way round (or vs validation)
    row = pair[pair["fold"] == 0].iloc[0]
    assert {row["role_a"], row["role_b"]} == {"train", "test"} and row["phash_distance"] == 0
    status = result.summary.set_index("check")["status"]
    assert status["near-duplicates across splits"] == "fail"
    assert status["patient overlap (train / validation / test)"] == "pass"
    assert not result.passed
    # only this pair: the noise images of the other patients are far apart
    assert len(result.near_duplicates) == 1


def test_a_patient_on_both_sides_of_a_fold_fails_the_audit(tmp_path):
    from tiny_training_cohort import write_tiny_cohort

    from fusion.audit import audit_run

    cohort = write_tiny_cohort(tmp_path / "tiny", n=24)
    run, fa = _fake_run(tmp_path, cohort, modalities=["2d"])
    clean = audit_run(run, hashes=False)
    assert clean.passed and clean.patient_overlap.empty
    test_patient = fa.loc[(fa["fold"] == 0) & (fa["role"] == "test"), "patient_id"].iloc[0]
    leaked = pd.concat([fa, pd.DataFrame([{"fold": 0, "kind": fa["kind"].iloc[0], "name": fa["name"].iloc[0],
                                           "patient_id": test_patient, "image_id": "99", "role": "train"}])])
    leaked.to_csv(run / "fold_assignments.csv", index=False)
    result = audit_run(run, hashes=False)
    assert list(result.patient_overlap["patient_id"]) == [test_patient]
    assert result.patient_overlap["roles"].iloc[0] == "test, train"
    assert result.summary.set_index("check").loc["patient overlap (train / validation / test)", "status"] == "fail"


def test_preprocessing_report_flags_weights_pretrained_on_the_same_data(tmp_path):
    from fusion.audit import preprocessing_report
    from fusion.transforms import IMAGENET_MEAN

    plain = preprocessing_report({"cohort": "bus_bra", "augment": "light", "size": 64, "weights": "none"})
    norm = plain.set_index("step").loc["intensity normalisation"]
    assert norm["leaks"] == "no" and str(IMAGENET_MEAN) in norm["setting"]
    assert (plain["leaks"] == "no").all()
    pre = tmp_path / "pretrain"
    pre.mkdir()
    (pre / "config.yaml").write_text("data: bus_bra\nbackbone: resnet18\n", encoding="utf-8")
    same = preprocessing_report({"cohort": "bus_bra", "weights": str(pre / "pretrained_resnet18.pt")})
    assert same.set_index("step").loc["initial weights", "leaks"] == "yes"
    other = preprocessing_report({"cohort": "demo_data/cohort.xlsx", "weights": str(pre / "pretrained_resnet18.pt")})
    assert other.set_index("step").loc["initial weights", "leaks"] == "check"
    stacked = preprocessing_report({"fusion": ["late"], "nested_fusion": False})
    assert stacked.set_index("step").loc["late fusion: first-level inputs", "leaks"] == "check"


def test_cli_audits_a_folder_data_set_and_refuses_bad_arguments(tmp_path, capsys):
    from tiny_training_cohort import write_class_folders

    from fusion.audit import main

    root = write_class_folders(tmp_path / "data", n_per_class=6)
    shutil.copyfile(root / "benign" / "benign (0).png", root / "malignant" / "malignant (99).png")
    out = tmp_path / "audit"
    assert main(["--data", str(root), "--out", str(out)]) == 0
    pairs = pd.read_csv(out / "audit_near_duplicates.csv")
    assert len(pairs) == 1 and {pairs["label_a"].iloc[0], pairs["label_b"].iloc[0]} == {"benign", "malignant"}
    assert (out / "audit.md").is_file() and "wrote:" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["--data", str(root), "--checklist"]) == 2
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no fold_assignments.csv" in capsys.readouterr().err


# ----------------------------------------------------------------------------- public data
#: BUSI pairs checked by eye (fusion.audit docstring): the same picture, at most 8 bits apart.
BUSI_SAME_PICTURE = [
    {"benign/benign (433).png", "malignant/malignant (145).png"},  # identical picture, two diagnoses
    {"benign/benign (131).png", "malignant/malignant (51).png"},   # identical picture, two diagnoses
    {"benign/benign (108).png", "benign/benign (114).png"},        # same scan, corner marker differs (8 bits)
]
#: BUSI pairs checked by eye at 10 bits: the same lesion, another frame or an annotation box.
BUSI_SAME_LESION_10 = [
    {"benign/benign (102).png", "benign/benign (121).png"},        # one with an annotation box
    {"benign/benign (125).png", "benign/benign (126).png"},        # neighbouring frame
    {"malignant/malignant (139).png", "malignant/malignant (207).png"},  # same lesion, 'L LOQ' label
]
#: Different images, checked by eye: BUSI at 12 bits, BUS-BRA (different patients) at 10 bits.
BUSI_DIFFERENT = [{"benign/benign (127).png", "normal/normal (126).png"}]
BUS_BRA_DIFFERENT = [{"bus_0211-r.png", "bus_1013-l.png"}, {"bus_0889-r.png", "bus_0987-r.png"},
                     {"bus_0727-s.png", "bus_0797-s.png"}]


def _pairs_of(images, root, names, threshold):
    from fusion.audit import hash_images, near_duplicate_pairs

    rel = images["path"].map(lambda p: Path(p).relative_to(root).as_posix())
    subset = images[rel.isin(names)].reset_index(drop=True)
    assert len(subset) == len(names)
    h = hash_images(subset["path"])
    pairs = near_duplicate_pairs(subset.assign(phash=h["phash"], dhash=h["dhash"]), threshold)
    found = {frozenset(Path(p).relative_to(root).as_posix() for p in (a, b))
             for a, b in zip(pairs["path_a"], pairs["path_b"])}
    return found, pairs


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::fusion.manifests.ImageLevelWarning")
def test_busi_known_near_duplicates_are_found_and_a_close_different_pair_is_not(shared_data):
    from fusion.audit import duplicate_groups, image_table

    images, source = image_table("busi", data_root=shared_data)
    assert source.unit_of_analysis == "image" and len(images) == 780
    names = set().union(*BUSI_SAME_PICTURE, *BUSI_SAME_LESION_10, *BUSI_DIFFERENT)
    found, pairs = _pairs_of(images, shared_data / "busi", names, threshold=8)  # the default
    assert found == {frozenset(s) for s in BUSI_SAME_PICTURE}
    assert (duplicate_groups(pairs)["labels"] == "benign, malignant").sum() == 2
    found10, _ = _pairs_of(images, shared_data / "busi", names, threshold=10)
    assert found10 == {frozenset(s) for s in BUSI_SAME_PICTURE + BUSI_SAME_LESION_10}


@pytest.mark.shared_data
def test_bus_bra_different_patients_at_10_bits_are_not_paired_by_default(shared_data):
    from fusion.audit import PHASH_THRESHOLD, image_table

    images, _ = image_table("bus_bra", data_root=shared_data)
    names = {f"images/{n}" for s in BUS_BRA_DIFFERENT for n in s}
    found, _ = _pairs_of(images, shared_data / "bus_bra", names, threshold=PHASH_THRESHOLD)
    assert found == set()
    found10, pairs10 = _pairs_of(images, shared_data / "bus_bra", names, threshold=10)
    assert found10 == {frozenset(f"images/{n}" for n in s) for s in BUS_BRA_DIFFERENT}
    assert not pairs10["same_patient"].any()


@pytest.mark.shared_data
def test_bus_bra_official_folds_and_a_run_s_folds_have_no_patient_overlap(shared_data, tmp_path, monkeypatch):
    from fusion.audit import audit_data, audit_run

    monkeypatch.setenv("LYMPH_SHARED_DATA", str(shared_data))
    official = audit_data("bus_bra", data_root=shared_data, hashes=False)
    row = official.summary.set_index("check").loc["patient overlap (train / validation / test)"]
    assert row["status"] == "pass" and row["n"] == 0 and official.patient_overlap.empty
    run, fa = _fake_run(tmp_path, "bus_bra")
    assert fa["patient_id"].nunique() == 1064
    result = audit_run(run, hashes=False)
    assert result.patient_overlap.empty and result.passed
