"""Tests of analysis.simulate: contract, determinism, direction of group differences, CLI."""
import numpy as np
import pandas as pd
import pytest

from analysis.cohort import load_cohort, validate_cohort
from analysis.schema import load_schema
from analysis.simulate import build_parser, main, simulate_cohort


@pytest.fixture(scope="module")
def full():
    return validate_cohort(simulate_cohort(), load_schema()).data


def test_contract_sizes_and_ids(full):
    assert len(full) == 586
    assert full["group"].value_counts().to_dict() == {"metastatic": 246, "benign": 212, "lymphoma": 128}
    assert full["patient_id"].iloc[0] == "P0001" and full["patient_id"].iloc[-1] == "P0586"
    assert full["patient_id"].is_unique
    assert set(full["hospital"].astype(str)) == {"Hospital A", "Hospital B", "Hospital C"}
    assert full["image_2d"].iloc[0] == "images/2d/P0001.png"
    assert full["image_cdfi"].iloc[0] == "images/cdfi/P0001.png"


def test_deterministic_and_seed_dependent():
    pd.testing.assert_frame_equal(simulate_cohort(n=50, seed=3), simulate_cohort(n=50, seed=3))
    assert not simulate_cohort(n=50, seed=3).equals(simulate_cohort(n=50, seed=4))


def test_ls_ratio_is_long_over_short(full):
    np.testing.assert_allclose(full["ls_ratio"], full["long_axis_mm"] / full["short_axis_mm"], atol=0.005)


def test_some_missing_values_but_few(full):
    share = full[["age", "internal_echo", "calcification", "adler_grade", "elasticity_score"]].isna().mean()
    assert (share > 0).all() and (share < 0.1).all()
    assert (full["image_elastography"].isna() == full["elasticity_score"].isna()).all()


def _share(full, column, level):
    return full.groupby("group", observed=True)[column].apply(lambda s: (s == level).mean())


def test_group_differences_point_the_published_way_but_overlap(full):
    med = full.groupby("group", observed=True)[["age", "short_axis_mm", "ls_ratio"]].median()
    assert med.loc["metastatic", "age"] > med.loc["benign", "age"]
    assert med.loc["lymphoma", "short_axis_mm"] > med.loc["metastatic", "short_axis_mm"] > med.loc["benign", "short_axis_mm"]
    assert med.loc["benign", "ls_ratio"] > 2 > med.loc["metastatic", "ls_ratio"]
    hilum_present = _share(full, "hilum", "present")
    assert hilum_present["benign"] > 0.6 and hilum_present["metastatic"] < 0.3
    assert _share(full, "necrosis", "present")["metastatic"] > 0.2 > _share(full, "necrosis", "present")["benign"]
    stiff = full.groupby("group", observed=True)["elasticity_score"].apply(lambda s: s.isin([4, 5]).mean())
    assert stiff["metastatic"] > 0.5 > stiff["benign"]
    assert _share(full, "internal_echo", "hypoechoic")["lymphoma"] > 0.6
    # overlap: every group shows every shape and the age ranges intersect
    assert (pd.crosstab(full["shape"], full["group"]) > 0).all().all()
    rng = full.groupby("group", observed=True)["age"].agg(["min", "max"])
    assert rng["min"].max() < rng["max"].min()


def test_cli_writes_identical_bytes_twice(tmp_path, capsys):
    for fmt in ("xlsx", "csv"):
        assert main(["--out", str(tmp_path / "a"), "--n", "30", "--format", fmt]) == 0
        assert main(["--out", str(tmp_path / "b"), "--n", "30", "--format", fmt]) == 0
        a = (tmp_path / "a" / f"cohort.{fmt}").read_bytes()
        assert a == (tmp_path / "b" / f"cohort.{fmt}").read_bytes()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("cohort_schema.yaml") and "cohort.csv" in last
    cohort = load_cohort(tmp_path / "a" / "cohort.xlsx")
    assert cohort.n_analysed == 30


def test_cli_help_has_examples():
    text = build_parser().format_help()
    assert "python -m analysis.simulate --out demo_data" in text
    assert main(["--n", "2", "--out", "unused"]) == 2


def test_cli_keeps_identical_files_and_refuses_to_replace_edited_ones(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["--out", str(out), "--n", "20", "--format", "csv"]) == 0
    assert main(["--out", str(out), "--n", "20", "--format", "csv"]) == 0  # same bytes: fine
    schema = out / "cohort_schema.yaml"
    schema.write_text(schema.read_text(encoding="utf-8") + "# my edits\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--out", str(out), "--n", "20", "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cohort_schema.yaml already exists and differs" in err
    assert schema.read_text(encoding="utf-8").endswith("# my edits\n")
    assert main(["--out", str(out), "--n", "20", "--format", "csv", "--overwrite"]) == 0
    assert not schema.read_text(encoding="utf-8").endswith("# my edits\n")
    (tmp_path / "afile").write_text("x")
    assert main(["--out", str(tmp_path / "afile"), "--n", "20"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
