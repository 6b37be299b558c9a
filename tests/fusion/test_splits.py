"""Invariants of fusion.splits, in the manner of scikit-learn's model_selection/tests/test_split.py."""
import numpy as np
import pandas as pd
import pytest

from analysis.errors import ConfigError
from fusion.splits import (
    Split,
    check_disjoint,
    holdout_split,
    hospital_splits,
    inner_validation_split,
    patient_folds,
    predefined_folds,
    with_inner_validation,
)


def _images_per_patient(n_patients=60, seed=1):
    """Rows = images; 1-3 images per patient; one label per patient (3 classes, unbalanced)."""
    rng = np.random.default_rng(seed)
    ids, labels, hosp = [], [], []
    for p in range(n_patients):
        lab = rng.choice(3, p=[0.5, 0.3, 0.2])
        h = ["Hospital A", "Hospital B", "Hospital C"][p % 3]
        for _ in range(rng.integers(1, 4)):
            ids.append(f"P{p:04d}")
            labels.append(lab)
            hosp.append(h)
    return np.array(ids), np.array(labels), np.array(hosp)


def _patients(ids, idx):
    return set(ids[np.asarray(idx, dtype=int)])


def test_patient_folds_never_put_a_patient_on_both_sides_and_cover_all_rows():
    ids, y, _ = _images_per_patient()
    folds = patient_folds(ids, y, n_splits=5, seed=0)
    assert len(folds) == 5
    all_test = np.concatenate([f.test_idx for f in folds])
    assert sorted(all_test.tolist()) == list(range(len(ids)))  # each row tested exactly once
    for f in folds:
        assert not _patients(ids, f.train_idx) & _patients(ids, f.test_idx)
        assert sorted(np.concatenate([f.train_idx, f.test_idx]).tolist()) == list(range(len(ids)))
        assert f.kind == "cv" and len(f.val_idx) == 0


def test_same_seed_gives_same_folds_and_another_seed_differs():
    ids, y, _ = _images_per_patient()
    a = patient_folds(ids, y, 5, seed=3)
    b = patient_folds(ids, y, 5, seed=3)
    c = patient_folds(ids, y, 5, seed=4)
    assert all(np.array_equal(x.test_idx, z.test_idx) for x, z in zip(a, b))
    assert not all(np.array_equal(x.test_idx, z.test_idx) for x, z in zip(a, c))


def test_stratification_roughly_holds():
    ids, y, _ = _images_per_patient(n_patients=200)
    overall = np.bincount(y, minlength=3) / len(y)
    for f in patient_folds(ids, y, 5, seed=0):
        share = np.bincount(y[f.test_idx], minlength=3) / len(f.test_idx)
        assert np.abs(share - overall).max() < 0.1


def test_inner_validation_comes_from_training_patients_only():
    ids, y, _ = _images_per_patient()
    for f in with_inner_validation(patient_folds(ids, y, 5, seed=0), ids, y, 0.2, seed=0):
        tr, va, te = (_patients(ids, i) for i in (f.train_idx, f.val_idx, f.test_idx))
        assert va and not (va & tr) and not (va & te) and not (tr & te)
        assert sorted(np.concatenate([f.train_idx, f.val_idx, f.test_idx]).tolist()) == list(range(len(ids)))


def test_inner_validation_fraction_is_about_right_and_falls_back_for_tiny_sets():
    ids, y, _ = _images_per_patient(n_patients=200)
    fit, val = inner_validation_split(np.arange(len(ids)), ids, y, fraction=0.2, seed=0)
    share = len(set(ids[val])) / 200
    assert 0.15 < share < 0.25
    tiny_ids = np.array(["a", "a", "b", "c", "d"])
    tiny_y = np.array([0, 0, 1, 0, 1])
    fit, val = inner_validation_split(np.arange(5), tiny_ids, tiny_y, 0.25, seed=0)
    assert len(val) and not set(tiny_ids[fit]) & set(tiny_ids[val])


def test_check_disjoint_raises_naming_the_patient():
    ids = np.array(["P1", "P1", "P2"])
    with pytest.raises(ConfigError, match=r"P1.*'train' and 'test'"):
        check_disjoint(ids, Split(0, np.array([0]), np.array([], int), np.array([1, 2]), "cv"))
    with pytest.raises(ConfigError, match="row position 2"):
        check_disjoint(ids, a=[2], b=[2])


def test_hospital_splits_leave_one_hospital_out():
    ids, y, h = _images_per_patient()
    splits = hospital_splits(h, ids)
    assert [s.name for s in splits] == ["Hospital A", "Hospital B", "Hospital C"]
    for s in splits:
        assert set(h[s.test_idx]) == {s.name} and s.name not in set(h[s.train_idx])


def test_holdout_split_by_hospital_and_by_fraction():
    ids, y, h = _images_per_patient()
    s = holdout_split(ids, y, hospital=h, holdout_hospital="Hospital B")
    assert set(h[s.test_idx]) == {"Hospital B"}
    with pytest.raises(ConfigError, match="did you mean 'Hospital B'"):
        holdout_split(ids, y, hospital=h, holdout_hospital="Hospital b")
    s = holdout_split(ids, y, test_fraction=0.25, seed=0)
    assert not _patients(ids, s.train_idx) & _patients(ids, s.test_idx)
    assert 0.15 < len(_patients(ids, s.test_idx)) / 60 < 0.35


def test_too_few_patients_for_the_folds_is_a_clear_error():
    with pytest.raises(ConfigError, match="only 3 patients"):
        patient_folds(["a", "b", "c"], [0, 1, 0], n_splits=5)


def test_predefined_folds_reject_a_patient_in_two_folds():
    with pytest.raises(ConfigError, match="'b'|b"):
        predefined_folds([1, 1, 2, 2], patient_ids=["a", "b", "b", "c"])
    splits = predefined_folds([1, 2, 1, 2], patient_ids=["a", "b", "a", "b"])
    assert [s.test_idx.tolist() for s in splits] == [[0, 2], [1, 3]]


@pytest.mark.shared_data
def test_bus_bra_no_case_on_both_sides_of_any_split(shared_data):
    """Real data: BUS-BRA has up to several images per Case; check all folds + inner validation."""
    table = pd.read_csv(shared_data / "bus_bra" / "bus_data.csv")
    ids = table["Case"].astype(str).to_numpy()
    y = table["Pathology"].to_numpy()
    assert len(set(ids)) < len(ids)  # the test is meaningful only with repeated patients
    for seed in (0, 1):
        folds = with_inner_validation(patient_folds(ids, y, 5, seed=seed), ids, y, 0.2, seed=seed)
        covered = np.concatenate([f.test_idx for f in folds])
        assert sorted(covered.tolist()) == list(range(len(ids)))
        for f in folds:
            sides = [_patients(ids, f.train_idx), _patients(ids, f.val_idx), _patients(ids, f.test_idx)]
            assert all(sides)
            assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    # the authors' official folds are patient-disjoint as well
    official = pd.read_csv(shared_data / "bus_bra" / "5-fold-cv.csv").set_index("ID").loc[table["ID"]]
    for f in with_inner_validation(predefined_folds(official["kFold"].to_numpy(), ids), ids, y, 0.2, seed=0):
        sides = [_patients(ids, f.train_idx), _patients(ids, f.val_idx), _patients(ids, f.test_idx)]
        assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
