"""fusion.manifests: BUSI, BUS-BRA and image folders as (table, schema); malformed inputs."""
import shutil
import warnings
from pathlib import Path

import pytest

from analysis.errors import CohortError
from analysis.schema import load_schema
from fusion.dataset import MultimodalDataset
from fusion.manifests import (ImageLevelWarning, bus_bra_manifest, busi_manifest, default_data_root,
                              folder_manifest, load_manifest, resolve_data_root)

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "images"

BUS_CSV = """ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX
bus_0001-l,1,idc,malignant,4,GE Logiq 7 @10-14MHz,274,353,left,"[1,2,3,4]"
bus_0001-r,1,idc,malignant,4,GE Logiq 7 @10-14MHz,275,353,right,"[1,2,3,4]"
bus_0002-s,2,fibroadenoma,benign,3,GE Logiq 5 @10-12MHz,274,371,single,"[1,2,3,4]"
"""
FOLDS = "ID,Pathology,kFold\nbus_0001-l,malignant,3\nbus_0001-r,malignant,3\nbus_0002-s,benign,1\n"


def _bus_bra(tmp_path, csv=BUS_CSV, folds=FOLDS):
    root = tmp_path / "bus_bra"
    (root / "images").mkdir(parents=True)
    for image_id in ("bus_0001-l", "bus_0001-r", "bus_0002-s"):
        shutil.copy(FIX / "bus_bra_0001-l.png", root / "images" / f"{image_id}.png")
    (root / "bus_data.csv").write_text(csv)
    if folds is not None:
        (root / "5-fold-cv.csv").write_text(folds)
    return root


def test_bus_bra_table_and_dataset_from_a_small_copy(tmp_path):
    df, schema = bus_bra_manifest(_bus_bra(tmp_path))
    assert list(df["patient_id"]) == ["1", "1", "2"] and list(df["group"]) == ["malignant", "malignant", "benign"]
    assert list(df["official_fold"]) == [3, 3, 1] and "official_fold_10" not in df
    assert list(df.index) == [2, 3, 4] and schema.variable_names == ("birads", "device", "side")
    ds = MultimodalDataset(df, schema, size=16, progress=False)
    assert ds.tensors("2d").shape == (3, 1, 16, 16) and ds.mask.all() and ds.labels.tolist() == [0, 0, 1]


@pytest.mark.parametrize("csv, folds, text", [
    (BUS_CSV.replace("Pathology", "Patology"), FOLDS, r"bus_data.csv: column 'Pathology': column not found.*did you mean 'Patology'"),
    (BUS_CSV.replace("benign,3", "benighn,3"), FOLDS, r"bus_data.csv: row 4, column 'Pathology': unknown label 'benighn'.*did you mean 'benign'"),
    (BUS_CSV.replace("bus_0002-s,", "../bus_0002-s,"), FOLDS, r"row 4, column 'ID': image id '../bus_0002-s' is not a plain file name"),
    (BUS_CSV, FOLDS.replace("bus_0001-r,malignant,3", "bus_0001-r,malignant,4"), r"5-fold-cv.csv: column 'kFold': patient \(Case\) 1 is in more than one"),
    (BUS_CSV, FOLDS.replace("benign,1", "benign,7"), r"5-fold-cv.csv: row 4, column 'kFold': fold '7' is not a number 1..5"),
    (BUS_CSV, FOLDS.replace("bus_0002-s,benign,1\n", ""), r"image 'bus_0002-s' has no fold"),
])
def test_malformed_bus_bra_gives_one_line_errors(tmp_path, csv, folds, text):
    root = _bus_bra(tmp_path, csv, folds)
    with pytest.raises(CohortError, match=text) as info:
        bus_bra_manifest(root)
    assert "\n" not in str(info.value)


def _tree(tmp_path, spec):
    root = tmp_path / "imgs"
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            shutil.copy(FIX / "grey8.png", root / cls / f"img ({i + 1}).png")
    return root


def test_folder_manifest_natural_order_and_errors(tmp_path):
    root = _tree(tmp_path, {"b": 11, "a": 2})
    (root / "b" / "notes.txt").write_text("x")
    (root / "b" / "img (1)_mask.png").write_bytes(b"")
    df, schema = folder_manifest(root)
    assert schema.group_levels == ("a", "b") and len(df) == 13
    assert list(df["image_2d"][2:5]) == ["b/img (1).png", "b/img (2).png", "b/img (3).png"]
    assert df["patient_id"].is_unique and df.attrs["image_root"] == str(root)
    with pytest.raises(CohortError, match="class folder 'c' not found"):
        folder_manifest(root, classes=["a", "c"])
    (root / "empty").mkdir()
    with pytest.raises(CohortError, match=r"empty: class folder 'empty' holds no images"):
        folder_manifest(root)
    with pytest.raises(CohortError, match="image folder not found"):
        folder_manifest(tmp_path / "nope")
    with pytest.raises(CohortError, match="no class sub-folders"):
        folder_manifest(root / "a")


def test_yaml_manifests_and_their_errors(tmp_path):
    _tree(tmp_path, {"x": 1, "y": 2})
    good = tmp_path / "m.yaml"
    good.write_text("dataset: folder\nroot: imgs\nclasses: [y, x]\n")
    df, schema = load_manifest(good)
    assert schema.group_levels == ("y", "x") and len(df) == 3
    for text, match in [("datset: folder\n", "unknown key 'datset'.*did you mean 'dataset'"),
                        ("dataset: buzi\n", "dataset 'buzi' is not one of busi, bus_bra, folder; did you mean 'busi'"),
                        ("dataset: folder\n", "needs 'root:'"),
                        ("dataset: [unclosed\n", "not valid YAML")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(CohortError, match=match):
            load_manifest(bad)


def test_missing_data_root_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LYMPH_SHARED_DATA", str(tmp_path / "nowhere"))
    assert default_data_root() == tmp_path / "nowhere"
    with pytest.raises(CohortError, match=r"nowhere/busi: data folder not found \(set LYMPH_SHARED_DATA"):
        busi_manifest()
    with pytest.raises(CohortError, match="data folder not found"):
        resolve_data_root(tmp_path / "also_missing")


# ------------------------------------------------------------------ the real shared data
@pytest.mark.shared_data
def test_busi_counts_match_the_readme():
    with pytest.warns(ImageLevelWarning, match="image-level"):
        df, schema = busi_manifest()
    assert len(df) == 780
    assert df["group"].value_counts().to_dict() == {"benign": 437, "malignant": 210, "normal": 133}
    assert schema.group_levels == ("malignant", "benign", "normal") and df["patient_id"].is_unique
    ds = MultimodalDataset(df.iloc[::100], schema, size=32, progress=False)  # 8 real images, RGB -> grey
    assert ds.tensors("2d").shape == (8, 1, 32, 32) and ds.mask.all()


@pytest.mark.shared_data
def test_bus_bra_counts_folds_and_shipped_schema():
    df, schema = bus_bra_manifest()
    assert len(df) == 1875 and df["patient_id"].nunique() == 1064
    assert df["group"].value_counts().to_dict() == {"benign": 1268, "malignant": 607}
    assert sorted(df["official_fold"].unique()) == [1, 2, 3, 4, 5]
    assert sorted(df["official_fold_10"].unique()) == list(range(1, 11))
    assert (df.groupby("patient_id")["official_fold"].nunique() == 1).all()
    assert load_schema(REPO / "examples" / "bus_bra_schema.yaml") == schema
    for name in ("bus_bra_manifest.yaml", "busi_manifest.yaml"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageLevelWarning)  # BUSI's expected warning
            table, _ = load_manifest(REPO / "examples" / name)
        assert len(table) in (1875, 780)
    ds = MultimodalDataset(df.iloc[:6], schema, size=32, progress=False)
    assert ds.mask.all() and list(ds.patient_ids) == ["1", "1", "2", "2", "3", "3"]
    assert list(ds.clinical.columns) == ["birads", "device", "side"]

