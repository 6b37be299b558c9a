"""fusion.dataset.MultimodalDataset: decode once, masks, labels, aggregated errors, views."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.errors import AnalysisWarning, CohortError, ImageError
from analysis.schema import Schema, Variable
from fusion.cache import ImageCache
from fusion.dataset import MultimodalDataset
from fusion.images import load_image

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "images"
SCHEMA = Schema(id_column="patient_id", group_column="group", group_levels=("metastatic", "lymphoma", "benign"),
                variables=(Variable("age"), Variable("shape", type="categorical", levels=("oval", "round"))),
                hospital_column="hospital",
                image_columns={"2d": "image_2d", "cdfi": "image_cdfi", "elastography": "image_elastography"})


def _cohort(tmp_path, n=5):
    for mod in ("2d", "cdfi", "elastography"):
        (tmp_path / "images" / mod).mkdir(parents=True, exist_ok=True)
    src = ["grey8.png", "rgb.png", "palette.png", "busi_benign_1.png", "bus_bra_0001-l.png"]
    rows = []
    for i in range(n):
        pid = f"P{i + 1:04d}"
        for mod in ("2d", "cdfi", "elastography"):
            shutil.copy(FIX / src[i % len(src)], tmp_path / "images" / mod / f"{pid}.png")
        rows.append({"patient_id": pid, "group": ("metastatic", "lymphoma", "benign")[i % 3],
                     "hospital": "Hospital A" if i < 3 else "Hospital B", "age": 40.0 + i, "shape": "oval",
                     "image_2d": f"images/2d/{pid}.png", "image_cdfi": f"images/cdfi/{pid}.png",
                     "image_elastography": f"images/elastography/{pid}.png"})
    return pd.DataFrame(rows)


def test_decodes_every_image_once_into_uint8_tensors(tmp_path):
    df = _cohort(tmp_path)
    before = df.copy()
    ds = MultimodalDataset(df, SCHEMA, root=tmp_path, size=16, progress=False)
    pd.testing.assert_frame_equal(df, before)  # caller's frame untouched
    assert len(ds) == 5 and ds.modalities == ("2d", "cdfi", "elastography")
    assert ds.tensors("2d").shape == (5, 1, 16, 16) and ds.tensors("cdfi").shape == (5, 3, 16, 16)
    assert ds.tensors("elastography").dtype == torch.uint8
    assert ds.labels.tolist() == [0, 1, 2, 0, 1] and ds.class_names == ("metastatic", "lymphoma", "benign")
    assert ds.mask.all() and len(ds.problems) == 0
    assert list(ds.patient_ids) == ["P0001", "P0002", "P0003", "P0004", "P0005"]
    assert list(ds.hospital) == ["Hospital A"] * 3 + ["Hospital B"] * 2
    assert list(ds.clinical.columns) == ["age", "shape"] and ds.rows.tolist() == [2, 3, 4, 5, 6]
    ref = load_image(tmp_path / "images/cdfi/P0002.png", size=16, channels=3)
    assert torch.equal(ds.tensors("cdfi")[1], ref)
    item = ds[1]
    assert set(item) == {"images", "mask", "label", "index"} and torch.equal(item["images"]["cdfi"], ref)


def test_empty_cell_keeps_the_patient_masked_and_reports_it(tmp_path):
    df = _cohort(tmp_path)
    df.loc[2, "image_cdfi"] = np.nan
    with pytest.warns(AnalysisWarning, match="1 image"):
        ds = MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, progress=False)
    assert len(ds) == 5
    assert ds.mask[:, 1].tolist() == [True, True, False, True, True]
    assert int(ds.tensors("cdfi")[2].sum()) == 0
    assert ds.problems[["row", "patient_id", "modality", "reason"]].values.tolist() == [[4, "P0003", "cdfi", "no image"]]


def test_all_broken_images_reported_at_once(tmp_path):
    df = _cohort(tmp_path)
    shutil.copy(FIX / "truncated.png", tmp_path / "images/2d/P0001.png")
    shutil.copy(FIX / "corrupt.png", tmp_path / "images/elastography/P0004.png")
    (tmp_path / "images/cdfi/P0005.png").unlink()
    with pytest.raises(ImageError) as info:
        MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, progress=False)
    msg = str(info.value)
    assert msg.startswith("table: 3 image(s) could not be loaded")
    assert "row 2, patient P0001, modality '2d'" in msg and "truncated" in msg
    assert "row 5, patient P0004, modality 'elastography'" in msg and "corrupt" in msg
    assert "row 6, patient P0005, modality 'cdfi': images/cdfi/P0005.png: image file not found" in msg
    with pytest.warns(AnalysisWarning, match="3 image"):
        ds = MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, on_error="mask", progress=False)
    assert int((~ds.mask).sum()) == 3 and sorted(ds.problems["patient_id"]) == ["P0001", "P0004", "P0005"]


def test_cohort_object_root_defaults_to_its_file_folder(tmp_path):
    from analysis.cohort import Cohort
    df = _cohort(tmp_path)
    df.index = pd.RangeIndex(2, 7, name="row")
    cohort = Cohort(data=df, schema=SCHEMA, source=str(tmp_path / "cohort.xlsx"),
                    exclusions=pd.DataFrame(columns=["row", "patient_id", "column", "reason"]), n_input=5)
    ds = MultimodalDataset(cohort, modalities=["elastography"], size=8, progress=False)
    assert ds.modalities == ("elastography",) and ds.mask.all()


def test_bad_table_gives_one_line_errors(tmp_path):
    df = _cohort(tmp_path)
    with pytest.raises(CohortError, match=r"row 3, column 'group': group 'lymfoma' is not one of .*did you mean 'lymphoma'"):
        MultimodalDataset(df.replace({"group": {"lymphoma": "lymfoma"}}), SCHEMA, root=tmp_path, size=8,
                          progress=False)
    with pytest.raises(CohortError, match=r"column 'image_cdfi': column not found"):
        MultimodalDataset(df.drop(columns="image_cdfi"), SCHEMA, root=tmp_path, size=8, progress=False)
    with pytest.raises(CohortError, match="unknown modality 'cdif'.*did you mean 'cdfi'"):
        MultimodalDataset(df, SCHEMA, root=tmp_path, modalities=["cdif"], size=8, progress=False)


def test_subset_shares_storage_and_batches_gather_the_right_rows(tmp_path):
    ds = MultimodalDataset(_cohort(tmp_path), SCHEMA, root=tmp_path, size=8, progress=False)
    sub = ds.subset([4, 1, 3])
    assert len(sub) == 3 and sub.labels.tolist() == [1, 1, 0]
    assert list(sub.patient_ids) == ["P0005", "P0002", "P0004"]
    assert sub._store.images["2d"].data_ptr() == ds.tensors("2d").data_ptr()  # no pixel copy
    subsub = sub.subset([2, 0])
    assert list(subsub.patient_ids) == ["P0004", "P0005"] and subsub.indices.tolist() == [3, 4]
    b = sub.batch([0, 2])
    assert torch.equal(b["images"]["cdfi"], ds.tensors("cdfi")[[4, 3]])
    assert b["label"].tolist() == [1, 0] and b["index"].tolist() == [4, 3]
    assert sub[1]["index"] == 1 and torch.equal(sub.tensors("2d"), ds.tensors("2d")[[4, 1, 3]])
    assert list(sub.clinical["age"]) == [44.0, 41.0, 43.0]
    with pytest.raises(IndexError):
        ds.subset([5])
    with pytest.raises(KeyError, match="did you mean '2d'"):
        ds.tensors("2D")


def test_cache_makes_the_second_construction_decode_nothing(tmp_path):
    df = _cohort(tmp_path)
    cache = ImageCache(tmp_path / "cache")
    a = MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, cache=cache, progress=False)
    # 5 distinct files, decoded grey for 2d and RGB for cdfi; elastography reuses the RGB entries
    assert cache.misses == 10 and cache.hits == 5
    b = MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, cache=cache, progress=False)
    assert cache.misses == 10 and cache.hits == 20
    for m in a.modalities:
        assert torch.equal(a.tensors(m), b.tensors(m))


def test_from_tensors_and_dataloader_compatibility():
    imgs = {"2d": torch.randint(0, 255, (6, 1, 8, 8), dtype=torch.uint8)}
    ds = MultimodalDataset.from_tensors(imgs, [0, 1, 2, 0, 1, 2], class_names=("a", "b", "c"))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    first = next(iter(loader))
    assert first["images"]["2d"].shape == (4, 1, 8, 8) and first["label"].tolist() == [0, 1, 2, 0]


def test_windows_paths_load_and_a_missing_image_folder_is_one_line(tmp_path):
    df = _cohort(tmp_path)
    df["image_2d"] = df["image_2d"].str.replace("/", "\\")  # typed on Windows: images\2d\P0001.png
    ds = MultimodalDataset(df, SCHEMA, root=tmp_path, modalities=["2d"], size=8, progress=False)
    assert bool(ds.mask.all())
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(ImageError) as info:
        MultimodalDataset(df, SCHEMA, root=tmp_path, size=8, progress=False)
    message = str(info.value)
    assert "\n" not in message and "15 image path(s) point into folder(s) that do not exist" in message
    assert str(tmp_path / "images") in message
