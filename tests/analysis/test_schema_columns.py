"""Columns named freely: id spellings recognised by infer_schema, with_columns, image_column_map,
and load_cohort's column options."""
import pandas as pd
import pytest

from analysis.cohort import load_cohort
from analysis.errors import CohortError, ConfigError, SchemaError
from analysis.schema import image_column_map, infer_schema, load_schema, with_columns


def _table(id_name="PatientID", n=12):
    return pd.DataFrame({
        id_name: [f"P{i:02d}" for i in range(n)],
        "Diagnosis": ["metastatic", "lymphoma", "benign"] * (n // 3),
        "Hospital": ["North", "South"] * (n // 2),
        "Age": [55.5, 61.0, 47.25, 70.0] * (n // 4),
        "Bmode_file": [f"img/b{i}.png" for i in range(n)],
        "Doppler_file": [f"img/d{i}.png" for i in range(n)],
    })


@pytest.mark.parametrize("id_name", ["PatientID", "patient_id", "Patient ID", "patient-id", "ID", "id", "Case",
                                     "case_no", "Subject", "subject_id", "MRN", "Participant ID", "record_id"])
def test_common_spellings_of_a_patient_id_column_are_recognised(id_name):
    schema = infer_schema(_table(id_name), "Diagnosis")
    assert schema.id_column == id_name
    assert id_name not in schema.variable_names


def test_an_id_named_column_with_repeated_values_is_not_the_id():
    df = _table("Case")
    df["Case"] = [f"C{i // 2}" for i in range(len(df))]  # several rows per case: not a patient table id
    assert infer_schema(df, "Diagnosis").id_column is None


def test_with_columns_names_id_hospital_and_images_and_drops_them_from_the_variables():
    df = _table("Record").assign(Centre=["a", "b", "c"] * 4)
    inferred = infer_schema(df, "Diagnosis")
    before = inferred.to_dict()
    schema = with_columns(inferred, id_column="Record", hospital_column="Centre",
                          image_columns=["bmode=Bmode_file", ("cdfi", "Doppler_file")], columns=df.columns,
                          source="cohort.csv")
    assert inferred.to_dict() == before  # the input schema is not modified
    assert (schema.id_column, schema.hospital_column) == ("Record", "Centre")
    assert schema.image_columns == {"bmode": "Bmode_file", "cdfi": "Doppler_file"}
    assert "Centre" not in schema.variable_names and "Age" in schema.variable_names
    assert schema.group_column == "Diagnosis" and schema.group_levels == inferred.group_levels
    # every column stays accounted for: role columns are not 'excluded', the replaced hospital column is
    excluded = dict(schema.excluded)
    assert not {"Record", "Centre", "Bmode_file", "Doppler_file"} & set(excluded)
    assert "'Centre' was named instead" in excluded["Hospital"]


def test_a_schema_with_named_columns_round_trips_through_yaml(tmp_path):
    df = _table()
    schema = with_columns(infer_schema(df, "Diagnosis"), image_columns=["bmode=Bmode_file", "cdfi=Doppler_file"],
                          columns=df.columns)
    assert load_schema(schema.to_yaml(tmp_path / "named.yaml")) == schema


def test_with_columns_completes_and_overrides_a_loaded_schemas_images():
    base = load_schema()  # the demo schema: image_2d, image_cdfi, image_elastography
    schema = with_columns(base, image_columns={"2d": "Bmode_file", "extra": "Doppler_file"})
    assert schema.image_columns["2d"] == "Bmode_file" and schema.image_columns["extra"] == "Doppler_file"
    assert schema.image_columns["cdfi"] == base.image_columns["cdfi"]
    assert schema.variables == base.variables
    assert with_columns(base) == base


def test_with_columns_errors_name_the_file_the_column_and_a_close_name():
    df = _table()
    schema = infer_schema(df, "Diagnosis")
    cases = [
        (dict(id_column="PatientId"), CohortError, "id column 'PatientId' not found", "PatientID"),
        (dict(hospital_column="hospitals"), CohortError, "hospital column 'hospitals' not found", "Hospital"),
        (dict(image_columns=["bmode=Bmode_fiel"]), CohortError, "image column of modality 'bmode' 'Bmode_fiel'",
         "Bmode_file"),
    ]
    for kwargs, cls, text, close in cases:
        with pytest.raises(cls) as err:
            with_columns(schema, columns=df.columns, source="cohort.csv", **kwargs)
        msg = str(err.value)
        assert msg.startswith("cohort.csv: column ") and text in msg and f"did you mean '{close}'?" in msg
        assert "\n" not in msg and err.value.file == "cohort.csv"
    with pytest.raises(ConfigError, match="group column 'Hospital' differs from the schema's group column "
                                          "'Diagnosis'"):
        with_columns(schema, group_column="Hospital")
    with pytest.raises(ConfigError, match="column 'Bmode_file' cannot be both the image column of modality 'a' "
                                          "and the image column of modality 'b'"):
        with_columns(schema, image_columns=["a=Bmode_file", "b=Bmode_file"])
    with pytest.raises(ConfigError, match="cannot be both the group column and the id column"):
        with_columns(schema, id_column="Diagnosis")


@pytest.mark.parametrize("value, text", [
    (["bmode"], "expected MODALITY=COLUMN"),
    (["=Bmode_file"], "both the modality and the column must be named"),
    (["bmode="], "both the modality and the column must be named"),
    (["b/mode=x"], "modality names are letters"),
    (["bmode=a", "bmode=b"], "modality 'bmode' given twice"),
    ([42], "expected MODALITY=COLUMN"),
])
def test_image_column_map_rejects_malformed_items_in_one_line(value, text):
    with pytest.raises(ConfigError, match=text):
        image_column_map(value)


def test_image_column_map_reads_strings_pairs_and_mappings():
    assert image_column_map(None) == {}
    assert image_column_map([" bmode = B mode file ", ("cdfi", "Doppler")]) == {"bmode": "B mode file",
                                                                                 "cdfi": "Doppler"}
    assert image_column_map({"elastography": "Elasto_file"}) == {"elastography": "Elasto_file"}
    assert image_column_map(["a=b=c"]) == {"a": "b=c"}  # the column keeps everything after the first '='


def test_load_cohort_infers_a_schema_with_the_named_columns(tmp_path):
    path = tmp_path / "cohort.csv"
    _table().to_csv(path, index=False)
    cohort = load_cohort(path, group="Diagnosis", image_columns=["bmode=Bmode_file", "cdfi=Doppler_file"])
    assert cohort.schema.id_column == "PatientID" and cohort.schema.hospital_column == "Hospital"
    assert cohort.schema.image_columns == {"bmode": "Bmode_file", "cdfi": "Doppler_file"}
    assert cohort.data["Bmode_file"].tolist()[:2] == ["img/b0.png", "img/b1.png"]
    with pytest.raises(SchemaError, match=r"--group COLUMN"):
        load_cohort(path)
    with pytest.raises(CohortError, match=r"cohort.csv: column 'Patient': id column 'Patient' not found.*"
                                          r"did you mean 'PatientID'\?"):
        load_cohort(path, group="Diagnosis", id_column="Patient")
