"""fusion.joint / fusion.heads: the joint network over image branches + clinical branch, on tiny data.

The data: the tiny demo cohort (tests/fusion/tiny_training_cohort.py, 18 patients, real schema
and clinical variables), B-mode and elastography at 32 px, with the elastography image of every
fourth patient marked absent -- its pixels are kept as a real image, so a network that looked
at an absent image would be caught by changing them.
"""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.errors import AnalysisWarning, ConfigError
from fusion import joint
from fusion.dataset import MultimodalDataset
from fusion.heads import ConcatHead, GatedAttentionHead, masked_softmax
from fusion.joint import JointData, JointOptions, fit_joint, joint_fusion_predictions
from fusion.splits import patient_folds, with_inner_validation
from tiny_training_cohort import write_tiny_cohort

torch.set_num_threads(1)
OPTIONS = JointOptions(epochs=1, patience=2, batch_size=8)
ABSENT = np.arange(0, 18, 4)  # rows whose elastography image is marked absent


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from fusion.train import load_table

    cohort = write_tiny_cohort(tmp_path_factory.mktemp("joint") / "data", n=18)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, schema, _ = load_table(cohort)
    full = MultimodalDataset(table, schema, modalities=["2d", "elastography"], size=32, progress=False)
    y = full.labels.numpy()
    splits = with_inner_validation(patient_folds(full.patient_ids, y, 2, 0), full.patient_ids, y, 0.25, 0)
    return full, splits


def make_dataset(base, labels=None, absent_pixels=None):
    """The base cohort with ABSENT elastography masked; optionally other labels / absent pixels."""
    full, _ = base
    images = {m: full.tensors(m).clone() for m in full.modalities}
    if absent_pixels is not None:
        images["elastography"][ABSENT] = absent_pixels
    mask = full.mask.clone()
    mask[ABSENT, 1] = False
    ds = MultimodalDataset.from_tensors(images, full.labels.numpy() if labels is None else labels,
                                        class_names=full.class_names, mask=mask, patient_ids=full.patient_ids,
                                        clinical=full.clinical)
    ds.schema = full.schema
    return ds


@pytest.fixture(scope="module")
def trained(base):
    """One network per head on fold 0 (shared by the tests that only predict)."""
    ds = make_dataset(base)
    split = base[1][0]
    return {f: fit_joint(ds, split, fusion=f, options=OPTIONS, seed=0) for f in ("concat", "gated")}


# ----------------------------------------------------------------------------- heads
def test_masked_softmax_gives_absent_sources_zero_weight_and_an_empty_row_zeros():
    scores = torch.tensor([[1.0, 5.0, 2.0], [0.3, 0.2, 0.1], [4.0, 4.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    w = masked_softmax(scores, mask)
    ref = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    torch.testing.assert_close(w[0], torch.stack([ref[0], torch.tensor(0.0), ref[1]]))
    assert w[1].abs().sum() == 0 and torch.isfinite(w).all()
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("head_cls", [ConcatHead, GatedAttentionHead])
def test_a_masked_source_embedding_does_not_reach_the_head_output(head_cls):
    torch.manual_seed(0)
    head = head_cls(3, 8, 4).eval()
    h = torch.randn(5, 3, 8)
    mask = torch.ones(5, 3, dtype=torch.bool)
    mask[:, 1] = False
    other = h.clone()
    other[:, 1] = torch.randn(5, 8) * 100
    torch.testing.assert_close(head(h, mask), head(other, mask), rtol=0, atol=0)
    assert not torch.allclose(head(h, torch.ones_like(mask)), head(other, torch.ones_like(mask)))


# ----------------------------------------------------------------------------- clinical encoding
def test_clinical_encoding_is_estimated_on_the_training_rows_only(base):
    full, splits = base
    train = splits[0].train_idx
    x = joint.encode_clinical(full.clinical, full.schema, train)
    # age, the first schema variable, is continuous: standardised with the mean / SD of the
    # training rows that have it (the others get the training mean, i.e. 0)
    seen = train[full.clinical["age"].notna().to_numpy()[train]]
    np.testing.assert_allclose(x[seen, 0].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(x[seen, 0].std(), 1, rtol=1e-12)
    changed = full.clinical.copy()
    changed.loc[splits[0].test_idx, "age"] = 1000.0
    y = joint.encode_clinical(changed, full.schema, train)
    np.testing.assert_array_equal(y[train], x[train])  # a test row's value moves no training row


# ----------------------------------------------------------------------------- training and prediction
@pytest.mark.slow
def test_each_fusion_head_trains_and_predicts_every_test_patient_once(base):
    ds = make_dataset(base)
    out = joint_fusion_predictions(ds, base[1], options=OPTIONS, seed=0)
    classes = list(ds.class_names)
    assert list(out.columns) == ["patient_id", "fold", "split", "y_true", "model", "modality",
                                 *[f"p_{c}" for c in classes]]
    assert set(out["model"]) == {"joint_concat", "joint_gated"} and set(out["modality"]) == {"fusion_images_clinical"}
    for _, g in out.groupby("model"):
        assert sorted(g["patient_id"]) == sorted(ds.patient_ids) and g["patient_id"].is_unique
        for s in base[1]:
            assert set(g.loc[g["fold"] == s.fold, "patient_id"]) == set(ds.patient_ids[s.test_idx])
    assert (out["split"] == "test").all()
    np.testing.assert_allclose(out[[f"p_{c}" for c in classes]].sum(axis=1), 1, atol=1e-9)
    assert out.loc[out["patient_id"].isin(ds.patient_ids[ABSENT])].notna().all().all()


def test_images_only_variant_and_the_hospital_split_name(base):
    ds = make_dataset(base)
    split = base[1][0]
    from dataclasses import replace

    out = joint_fusion_predictions(ds, [replace(split, kind="hospital")], fusion="concat", clinical=False,
                                   options=OPTIONS, seed=0)
    assert set(out["modality"]) == {"fusion_images"} and set(out["split"]) == {"external"}
    assert len(out) == len(split.test_idx)


def test_a_missing_image_is_never_looked_at(base, trained):
    """Patients without an elastography image are predicted, and what lies in the absent
    image's pixels changes nothing: not in training (no branch or batch-norm sees it), not in
    prediction."""
    split = base[1][0]
    assert len(np.intersect1d(ABSENT, split.test_idx)) and len(np.intersect1d(ABSENT, split.train_idx))
    noise = torch.randint(0, 256, (len(ABSENT), 3, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(7))
    other = fit_joint(make_dataset(base, absent_pixels=noise), split, fusion="gated", options=OPTIONS, seed=0)
    p = trained["gated"].predict_proba(split.test_idx)
    np.testing.assert_array_equal(other.predict_proba(split.test_idx), p)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-9)


def test_a_test_patients_own_label_does_not_change_its_prediction(base, trained):
    full, splits = base
    split = splits[0]
    y = full.labels.numpy().copy()
    y_test = y.copy()
    y_test[split.test_idx] = (y_test[split.test_idx] + 1) % 3
    p = trained["concat"].predict_proba(split.test_idx)
    relabelled = fit_joint(make_dataset(base, labels=y_test), split, fusion="concat", options=OPTIONS, seed=0)
    np.testing.assert_array_equal(relabelled.predict_proba(split.test_idx), p)
    # the training patients' labels do reach it (the comparison above can fail)
    y_train = y.copy()
    y_train[split.train_idx] = (y_train[split.train_idx] + 1) % 3
    retrained = fit_joint(make_dataset(base, labels=y_train), split, fusion="concat", options=OPTIONS, seed=0)
    assert not np.allclose(retrained.predict_proba(split.test_idx), p)


def test_seeded_training_is_reproducible_on_cpu(base, trained):
    split = base[1][0]
    ds = make_dataset(base)
    again = fit_joint(ds, split, fusion="concat", options=OPTIONS, seed=0)
    np.testing.assert_array_equal(again.predict_proba(split.test_idx), trained["concat"].predict_proba(split.test_idx))
    for a, b in zip(again.network.state_dict().values(), trained["concat"].network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.fit_result.history == trained["concat"].fit_result.history


def _with_inputs(data: JointData, source: str, rng) -> JointData:
    """``data`` with the inputs of ``source`` replaced (noise images / random clinical values)."""
    out = copy.copy(data)
    if source == "clinical":
        out.clinical = torch.as_tensor(rng.normal(0, 3, tuple(data.clinical.shape)), dtype=torch.float32)
    else:
        out.images = dict(data.images)
        out.images[source] = torch.as_tensor(rng.integers(0, 256, tuple(data.images[source].shape)),
                                             dtype=torch.uint8)
    return out


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_masking_a_source_changes_the_output_only_through_that_source(base, trained, fusion):
    model = trained[fusion]
    idx = base[1][0].test_idx
    assert model.sources == ("2d", "elastography", "clinical")
    rng = np.random.default_rng(0)

    def predict(data, on):
        return joint.predict_proba(model.network, data, idx, transform=model.transform, source_mask=on)

    full = predict(model.data, None)
    np.testing.assert_array_equal(predict(model.data, [True, True, True]), full)
    for s, name in enumerate(model.sources):
        on = np.ones(3, dtype=bool)
        on[s] = False
        off = predict(model.data, on)
        changed = _with_inputs(model.data, name, rng)
        # switched off, the source's inputs do not matter; switched on, they do
        np.testing.assert_array_equal(predict(changed, on), off)
        assert not np.allclose(predict(changed, None), full)
        assert not np.allclose(off, full)
        # the same rows predicted with a per-row mask
        np.testing.assert_array_equal(predict(model.data, np.tile(on, (len(idx), 1))), off)
    # switching elastography off is the same as not having the image
    on = np.array([True, False, True])
    absent = copy.copy(model.data)
    absent.source_mask = model.data.source_mask.clone()
    absent.source_mask[:, 1] = False
    np.testing.assert_array_equal(predict(absent, None), predict(model.data, on))
    # no source at all: one answer for everybody
    none = predict(model.data, np.zeros(3, dtype=bool))
    np.testing.assert_array_equal(none, np.repeat(none[:1], len(idx), axis=0))


def test_source_mask_of_the_wrong_shape_and_unknown_heads_are_clear_errors(base, trained):
    model = trained["concat"]
    with pytest.raises(ValueError, match=r"source_mask must have shape \(3,\)"):
        model.predict_proba([0, 1], source_mask=[True, False])
    with pytest.raises(ConfigError, match="did you mean 'gated'"):
        joint_fusion_predictions(make_dataset(base), base[1], fusion="gatd", options=OPTIONS)
    from dataclasses import replace

    with pytest.raises(ConfigError, match="no inner validation patients"):
        fit_joint(make_dataset(base), replace(base[1][0], val_idx=np.zeros(0, dtype=np.int64)), options=OPTIONS)


def test_without_clinical_variables_the_images_alone_are_fused_and_a_warning_says_so(base):
    ds = make_dataset(base)
    ds._store.clinical = pd.DataFrame(index=range(len(ds)))
    with pytest.warns(AnalysisWarning, match="no usable clinical variable"):
        out = joint_fusion_predictions(ds, base[1][:1], fusion="concat", options=OPTIONS)
    assert set(out["modality"]) == {"fusion_images"}


def test_branches_start_from_a_pretrained_checkpoint(tmp_path):
    from fusion.backbones import create_backbone

    torch.manual_seed(3)
    pre = create_backbone("resnet18", in_chans=1, num_classes=2)
    path = tmp_path / "pretrained_resnet18.pt"
    torch.save({"model": pre.state_dict(), "backbone": "resnet18"}, path)
    setup = joint.setup_joint(["2d", "cdfi"], {"2d": 1, "cdfi": 3}, 4, 3, fusion="gated",
                              options=JointOptions(weights={"2d": str(path), "cdfi": "none"}), device="cpu", seed=0)
    net = setup.model
    torch.testing.assert_close(net.branches["2d"].body.layer4[1].conv2.weight, pre.body.layer4[1].conv2.weight)
    assert not torch.equal(net.branches["cdfi"].body.layer4[1].conv2.weight, pre.body.layer4[1].conv2.weight)
    assert net.sources == ("2d", "cdfi", "clinical")
