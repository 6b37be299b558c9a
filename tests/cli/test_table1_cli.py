"""python -m analysis.table1: in-process main([...]) plus one subprocess smoke test."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.export import OUTPUT_FILES
from analysis.table1 import build_parser, main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--n-boot", "50"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_run_writes_every_file(demo_xlsx, tmp_path, capsys):
    out_dir = tmp_path / "reports"
    code, out, err = _run([demo_xlsx, "--out", out_dir, *FAST], capsys)
    assert code == 0, err
    for name in OUTPUT_FILES:
        assert (out_dir / name).stat().st_size > 0, name
    last = out.strip().splitlines()[-1]
    assert last.startswith("wrote: ") and all(name in last for name in OUTPUT_FILES)
    assert "60 rows read" in out
    stats = pd.read_csv(out_dir / "table1_stats.csv")
    assert list(stats.columns[:10]) == ["variable", "test", "statistic", "df", "p_value", "q_value",
                                        "effect_size", "effect_size_name", "n_used", "n_missing"]
    assert "Traceback" not in err


def test_stats_csv_byte_identical_on_two_runs(demo_xlsx, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run([demo_xlsx, "--out", a, *FAST], capsys)[0] == 0
    assert _run([demo_xlsx, "--out", b, *FAST], capsys)[0] == 0
    for name in ("table1_stats.csv", "odds_ratios.csv", "table1.md", "table1.tex", "methods.md",
                 "table1.xlsx", "table1.docx"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_inputs_not_modified(demo_xlsx, tmp_path, capsys):
    before = demo_xlsx.read_bytes()
    schema_before = (demo_xlsx.parent / "cohort_schema.yaml").read_bytes()
    assert _run([demo_xlsx, "--out", tmp_path / "o", "--no-regression", *FAST], capsys)[0] == 0
    assert demo_xlsx.read_bytes() == before
    assert (demo_xlsx.parent / "cohort_schema.yaml").read_bytes() == schema_before


def test_flags_reach_the_result(demo_xlsx, tmp_path, capsys):
    out_dir = tmp_path / "o"
    code, out, err = _run([demo_xlsx, "--out", out_dir, "--no-posthoc", "--reference", "lymphoma",
                           "--alpha", "0.01", "--seed", "3", *FAST], capsys)
    assert code == 0, err
    odds = pd.read_csv(out_dir / "odds_ratios.csv")
    assert set(odds["reference"]) == {"lymphoma"}
    methods = (out_dir / "methods.md").read_text(encoding="utf-8")
    assert "seed 3" in methods and "p < 0.01" in methods
    assert "post hoc" not in (out_dir / "table1.md").read_text(encoding="utf-8").lower()


def test_docx_beside_the_other_exports_holds_every_row(demo_xlsx, tmp_path, capsys):
    docx = pytest.importorskip("docx")
    import warnings

    import analysis

    out_dir = tmp_path / "o"
    code, out, err = _run([demo_xlsx, "--out", out_dir, *FAST], capsys)
    assert code == 0, err
    assert str(out_dir / "table1.docx") in out.strip().splitlines()[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analysis.table1(demo_xlsx, n_boot=50)
    doc = docx.Document(str(out_dir / "table1.docx"))
    rows = [[c.text for c in r.cells] for r in doc.tables[0].rows]
    assert rows[0] == list(res.display.columns)
    assert len(rows) == len(res.display) + 1
    p_col = list(res.display.columns).index("p")
    for got, (i, want) in zip(rows[1:], res.display.iterrows()):
        want = [str(v) for v in want]
        want[p_col] += str(res.row_info.loc[i, "marker"] or "")
        assert got == want
    titles = [p.text for p in doc.paragraphs if p.text.startswith(("Table", "Post hoc"))]
    assert titles[0].startswith("Table 1. Characteristics of 60 patients")
    assert any(t.startswith("Post hoc") for t in titles)
    assert sum(t.startswith("Table 2.") for t in titles) == 2  # univariable, multivariable
    assert len(doc.sections) == len(doc.tables) == 4


def _coded_csv(demo_xlsx, tmp_path):
    df = pd.read_excel(demo_xlsx)
    df["group"] = df["group"].map({"metastatic": 1, "lymphoma": 2, "benign": 3})
    csv = tmp_path / "coded" / "cohort.csv"
    csv.parent.mkdir()
    df.rename(columns={"group": "diagnosis"}).to_csv(csv, index=False)
    return csv


def test_group_labels_and_reference_any_case(demo_xlsx, tmp_path, capsys):
    csv = _coded_csv(demo_xlsx, tmp_path)
    out_dir = tmp_path / "o"
    code, out, err = _run([csv, "--group", "diagnosis", "--group-labels", "1=metastatic", "2=lymphoma",
                           "3=benign", "--reference", "Benign", "--no-posthoc", "--out", out_dir, *FAST], capsys)
    assert code == 0, err
    assert set(pd.read_csv(out_dir / "odds_ratios.csv")["reference"]) == {"benign"}
    md = (out_dir / "table1.md").read_text(encoding="utf-8")
    assert "| metastatic (n=" in md and "| benign (n=" in md and "| 1 (n=" not in md
    assert "against benign" in md


@pytest.mark.parametrize("extra, expected", [
    (["--group-labels", "1=metastatic", "4=other"], "'4' is not a group of column 'diagnosis' (groups: 1, 2, 3)"),
    (["--group-labels", "1:metastatic"], "'1:metastatic' is not CODE=LABEL"),
    (["--group-labels", "1=benign", "2=benign"], "would both be called 'benign'"),
    (["--group-labels", "1=metastatic", "--reference", "Benignn"], "is not a group level"),
    (["--group-labels", "1=metastatic", "--write-schema", "SCHEMA"], "--group-labels is not stored by --write-schema"),
])
def test_bad_group_labels_exit_2_one_line(extra, expected, demo_xlsx, tmp_path, capsys):
    csv = _coded_csv(demo_xlsx, tmp_path)
    extra = [tmp_path / "s.yaml" if a == "SCHEMA" else a for a in extra]
    code, out, err = _run([csv, "--group", "diagnosis", "--out", tmp_path / "o", *extra, *FAST], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not (tmp_path / "o" / "table1_stats.csv").exists() and not (tmp_path / "s.yaml").exists()


def test_group_without_schema_infers_types_and_write_schema(demo_xlsx, tmp_path, capsys):
    csv = tmp_path / "plain" / "cohort.csv"
    csv.parent.mkdir()
    df = pd.read_excel(demo_xlsx)
    df.to_csv(csv, index=False)
    yaml_path = tmp_path / "inferred.yaml"
    code, out, err = _run([csv, "--group", "group", "--write-schema", yaml_path], capsys)
    assert code == 0, err
    assert yaml_path.exists() and out.strip().splitlines()[-1] == f"wrote: {yaml_path}"
    yaml_path.write_text(yaml_path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    code, out, err = _run([csv, "--group", "group", "--write-schema", yaml_path], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert yaml_path.read_text(encoding="utf-8").endswith("# edited\n")
    code, out, err = _run([csv, "--group", "group", "--write-schema", yaml_path, "--overwrite"], capsys)
    assert code == 0 and not yaml_path.read_text(encoding="utf-8").endswith("# edited\n")
    code, out, err = _run([csv, "--group", "group", "--write-schema", tmp_path / "no" / "dir" / "s.yaml"], capsys)
    assert code == 2 and "cannot write" in err and "Traceback" not in err
    code, out, err = _run([csv, "--group", "group", "--out", tmp_path / "inf", "--no-regression", *FAST],
                          capsys)
    assert code == 0, err
    code, out, err = _run([csv, "--schema", yaml_path, "--out", tmp_path / "inf2", "--no-regression",
                           *FAST], capsys)
    assert code == 0, err


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "not found"),
    ("bad_group", "did you mean"),
    ("bad_reference", "did you mean 'lymphoma'"),
    ("write_schema_without_group", "--write-schema needs --group"),
    ("bad_level", "row "),
    ("schema_typo", "did you mean"),
    ("bad_predictor", "did you mean 'hilum'"),
])
def test_bad_input_exit_2_one_line(case, expected, demo_xlsx, tmp_path, capsys):
    args = [demo_xlsx, "--out", tmp_path / "o", *FAST]
    if case == "missing_file":
        args[0] = tmp_path / "nope.xlsx"
    elif case == "bad_group":
        csv = tmp_path / "c.csv"
        pd.read_excel(demo_xlsx).to_csv(csv, index=False)
        args = [csv, "--group", "gruop", "--out", tmp_path / "o"]
    elif case == "bad_reference":
        args += ["--reference", "lymphomma"]
    elif case == "write_schema_without_group":
        args += ["--write-schema", tmp_path / "s.yaml"]
    elif case == "bad_level":
        csv = tmp_path / "c.csv"
        df = pd.read_excel(demo_xlsx)
        df.loc[3, "margin"] = "irregullar"
        df.to_csv(csv, index=False)
        args = [csv, "--schema", demo_xlsx.parent / "cohort_schema.yaml", "--out", tmp_path / "o"]
    elif case == "schema_typo":
        bad = tmp_path / "bad.yaml"
        text = (demo_xlsx.parent / "cohort_schema.yaml").read_text(encoding="utf-8")
        bad.write_text(text.replace("id_column:", "id_colum:", 1), encoding="utf-8")
        args += ["--schema", bad]
    elif case == "bad_predictor":
        args += ["--predictors", "age", "hilun"]
    code, out, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "table1_stats.csv").exists()


def test_parser_help_has_examples():
    parser = build_parser()
    text = parser.format_help()
    assert "python -m analysis.table1 demo_data/cohort.xlsx" in text
    for flag in ("--out", "--schema", "--seed", "--group", "--reference", "--write-schema", "--sheet",
                 "--group-labels"):
        assert flag in text
    assert build_parser(add_help=False).parse_args(["x.xlsx"]).out == "reports"


def test_subprocess_smoke(demo_xlsx, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    help_run = subprocess.run([sys.executable, "-m", "analysis.table1", "--help"], capture_output=True,
                              text=True, env=env, timeout=120)
    assert help_run.returncode == 0 and "usage: python -m analysis.table1" in help_run.stdout
    run = subprocess.run([sys.executable, "-m", "analysis.table1", str(demo_xlsx), "--out",
                          str(tmp_path / "r"), "--n-boot", "50", "--no-regression"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("wrote: ")
    bad = subprocess.run([sys.executable, "-m", "analysis.table1", str(tmp_path / "missing.xlsx")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: ")


def test_many_problems_are_all_listed_in_a_file_and_exclusions_name_rows(demo_xlsx, tmp_path, capsys):
    df = pd.read_excel(demo_xlsx)
    bad = df.copy()
    bad.loc[:15, "margin"] = "weird"  # 16 problems: more than the 10 shown
    bad.to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = _run([tmp_path / "bad.csv", "--schema", demo_xlsx.parent / "cohort_schema.yaml",
                           "--out", tmp_path / "o"], capsys)
    assert code == 2 and "(6 more not shown)" in err
    listing = pd.read_csv(tmp_path / "o" / "cohort_problems.csv")
    assert len(listing) == 16 and listing["row"].tolist() == list(range(2, 18))
    assert err.strip().splitlines()[-1].endswith(str(tmp_path / "o" / "cohort_problems.csv"))
    excl = df.copy()
    excl.loc[14, "group"] = None
    excl.to_csv(tmp_path / "excl.csv", index=False)
    code, out, err = _run([tmp_path / "excl.csv", "--schema", demo_xlsx.parent / "cohort_schema.yaml",
                           "--out", tmp_path / "e", "--no-regression", *FAST], capsys)
    assert code == 0, err
    assert f"excluded: 1 x missing group: row 16 ({df.loc[14, 'patient_id']})" in out
