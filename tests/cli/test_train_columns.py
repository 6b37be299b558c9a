"""python -m fusion.train on a cohort whose columns are named freely: --group, --id-column,
--hospital-column, --image-column MODALITY=COLUMN (no schema file), and one-line errors."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from fusion.train import config_from_args, main

ARGS = ["--folds", "2", "--epochs", "1", "--size", "32", "--batch-size", "8", "--n-boot", "20", "--device", "cpu",
        "--threads", "1"]
COLUMNS = ["--group", "Diagnosis", "--image-column", "bmode=Bmode_file", "--image-column", "cdfi=Doppler_file",
           "--image-column", "elastography=Elasto_file"]


@pytest.fixture(scope="module")
def free_cohort(tmp_path_factory):
    """24 patients, columns as a hospital exports them; tiny PNGs per modality; no schema file."""
    root = tmp_path_factory.mktemp("free")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    rows = []
    for i in range(24):
        row = {"PatientID": f"P{i:03d}", "Diagnosis": ["metastatic", "lymphoma", "benign"][i % 3],
               "Hospital": ["North", "South"][i % 2], "Age": int(rng.integers(20, 80))}
        for modality in ("Bmode", "Doppler", "Elasto"):
            path = f"img/{modality}_{i}.png"
            Image.fromarray((rng.random((20, 20)) * 255).astype("uint8")).save(root / path)
            row[f"{modality}_file"] = path
        rows.append(row)
    cohort = root / "cohort.csv"
    pd.DataFrame(rows).to_csv(cohort, index=False)
    return cohort


@pytest.mark.slow
def test_a_cohort_with_free_column_names_trains_end_to_end(free_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([str(free_cohort), *COLUMNS, *ARGS, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("wrote: ")
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    cohort = pd.read_csv(free_cohort)
    assert set(oof["modality"]) == {"bmode", "cdfi", "elastography"}
    assert "resnet18" in set(oof["model"])
    for _, rows in oof.groupby(["model", "modality"]):  # PatientID recognised as the id: each patient once per model
        assert sorted(rows["patient_id"]) == sorted(cohort["PatientID"])
    truth = dict(zip(cohort["PatientID"], cohort["Diagnosis"]))
    assert all(truth[p] == y for p, y in zip(oof["patient_id"], oof["y_true"]))
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["n_patients"] == 24 and sorted(manifest["classes"]) == ["benign", "lymphoma", "metastatic"]
    config = yaml.safe_load((out / "config.yaml").read_text())  # the run can be repeated from its config
    assert config["group"] == "Diagnosis"
    assert config["image_columns"] == {"bmode": "Bmode_file", "cdfi": "Doppler_file", "elastography": "Elasto_file"}
    # Grad-CAM of test patients reads the run's column options from its config.yaml
    from fusion.gradcam import main as gradcam_main

    capsys.readouterr()
    assert gradcam_main(["--run", str(out), "--modality", "cdfi", "--per-class", "1", "--out", str(tmp_path / "cam")]) == 0
    cams = pd.read_csv(tmp_path / "cam" / "gradcam_test_patients.csv", dtype={"patient_id": str})
    assert len(cams) == 3 and set(cams["patient_id"]) <= set(cohort["PatientID"])


@pytest.mark.slow
def test_hospital_and_id_columns_named_by_option_drive_the_hospital_split(free_cohort, tmp_path):
    data = pd.read_csv(free_cohort).rename(columns={"PatientID": "Record", "Hospital": "Centre_name"})
    data["PatientID"] = [f"other{i % 2}" for i in range(len(data))]  # a decoy: not unique, not the id
    renamed = free_cohort.with_name("renamed.csv")
    data.to_csv(renamed, index=False)
    out = tmp_path / "ext"
    argv = [str(renamed), "--group", "Diagnosis", "--id-column", "Record", "--hospital-column", "Centre_name",
            "--image-column", "bmode=Bmode_file", *ARGS, "--holdout-hospital", "South", "--out", str(out)]
    assert main(argv) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    held = oof[oof["split"] == "external"]
    south = set(data.loc[data["Centre_name"] == "South", "Record"])
    assert set(held["patient_id"]) == south  # the hospital column named by option made the held-out set
    assert set(oof["patient_id"]) == set(data["Record"])
    cnn = oof[oof["model"] == "resnet18"]
    assert sorted(cnn.loc[cnn["split"] == "test", "patient_id"]) == sorted(set(data["Record"]) - south)


def test_the_options_are_kept_in_the_resolved_config():
    cfg = config_from_args(["c.csv", "--group", "Dx", "--id-column", "PatientID", "--hospital-column", "Site",
                            "--image-column", "bmode=B mode file", "--image-column", " cdfi = Doppler",
                            "--backbones", "ViT-small", "efficientnet-b7", "ResNet18", "convnext-tiny"])
    assert (cfg.group, cfg.id_column, cfg.hospital_column) == ("Dx", "PatientID", "Site")
    assert cfg.image_columns == {"bmode": "B mode file", "cdfi": "Doppler"}
    assert cfg.backbones == ["vit_small_patch16_224", "efficientnet_b7", "resnet18", "convnext_tiny"]


@pytest.mark.parametrize("extra, text", [
    ([], "pass a schema (--schema FILE), or the group column (--group COLUMN) to infer one"),
    (["--group", "Diagnosis"], "--image-column MODALITY=COLUMN (or in the schema's 'images:') "
                               "(columns holding image paths: Bmode_file, Doppler_file, Elasto_file)"),
    (["--group", "Diagnossis"], "group column 'Diagnossis' not found"),
    (["--group", "Diagnosis", "--image-column", "bmode=Bmode_fle"],
     "column 'Bmode_fle': image column of modality 'bmode' 'Bmode_fle' not found"),
    (["--group", "Diagnosis", "--image-column", "bmode"], "--image-column 'bmode': expected MODALITY=COLUMN"),
    (["--group", "Diagnosis", "--image-column", "b mode=Bmode_file"], "modality names are letters"),
    (["--group", "Diagnosis", "--image-column", "bmode=Bmode_file", "--image-column", "bmode=Elasto_file"],
     "modality 'bmode' given twice"),
    (["--group", "Diagnosis", "--image-column", "bmode=Bmode_file", "--id-column", "Patient_ID"],
     "id column 'Patient_ID' not found"),
    (["--group", "Diagnosis", "--image-column", "bmode=Bmode_file", "--hospital-column", "Hospitals"],
     "did you mean 'Hospital'?"),
    (["--group", "Diagnosis", "--image-column", "bmode=Hospital"],
     "column 'Hospital' cannot be both the hospital column and the image column of modality 'bmode'"),
    (["--group", "Diagnosis", "--image-column", "bmode=Bmode_file", "--modalities", "elasto"],
     "unknown modality 'elasto'"),
    (["--group", "Diagnosis", "--backbones", "vit-smal"], "did you mean 'vit_small_patch16_224'"),
])
def test_wrong_column_names_give_one_line_naming_the_file_and_column(free_cohort, tmp_path, capsys, extra, text):
    assert main([str(free_cohort), *extra, *ARGS, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and text in err[0], err
    if "not found" in text:
        assert str(free_cohort) in err[0] and ("did you mean" in err[0])


def test_group_option_must_agree_with_a_given_schema(free_cohort, tmp_path, capsys):
    from analysis.readers import read_table
    from analysis.schema import infer_schema, with_columns

    df = read_table(free_cohort)
    schema = with_columns(infer_schema(df, "Diagnosis"), image_columns=["bmode=Bmode_file"])
    path = schema.to_yaml(tmp_path / "schema.yaml")
    assert main([str(free_cohort), "--schema", str(path), "--group", "Hospital", *ARGS,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "group column 'Hospital' differs from the schema's group column 'Diagnosis'" in err


def test_group_option_beside_a_schema_file_says_the_file_is_not_used(free_cohort, tmp_path):
    import shutil
    import warnings

    from analysis.errors import AnalysisWarning
    from analysis.schema import default_schema_path
    from fusion.train import load_table

    folder = tmp_path / "with_schema"
    folder.mkdir()
    cohort = folder / "cohort.csv"
    shutil.copyfile(free_cohort, cohort)
    shutil.copyfile(default_schema_path(), folder / "cohort_schema.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, schema, source = load_table(cohort, group="Diagnosis", image_columns=["bmode=Bmode_file"])
    said = [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]
    assert any("schema is inferred from the table" in m and "cohort_schema.yaml is not used" in m for m in said)
    assert schema.group_column == "Diagnosis" and schema.image_columns == {"bmode": "Bmode_file"}


def test_the_python_api_takes_the_same_column_settings(free_cohort):
    from fusion.api import make_config

    cfg = make_config(free_cohort, group="Diagnosis", id_column="PatientID", image_columns=["bmode=Bmode_file"],
                      backbones=["ViT-small"])
    assert cfg.image_columns == {"bmode": "Bmode_file"} and cfg.backbones == ["vit_small_patch16_224"]
    with pytest.raises(Exception, match="modality 'bmode' given twice"):
        make_config(free_cohort, group="Diagnosis", image_columns=["bmode=Bmode_file", "bmode=Doppler_file"])
