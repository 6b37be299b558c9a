"""python -m fusion.audit as a subprocess: help with examples, and one-line errors."""
import subprocess
import sys

from fusion.audit import build_parser


def test_help_lists_working_examples():
    proc = subprocess.run([sys.executable, "-m", "fusion.audit", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "python -m fusion.audit runs/cv --checklist" in proc.stdout
    assert "--data busi" in build_parser().epilog


def test_a_folder_that_is_not_a_run_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fusion.audit", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}: no fold_assignments.csv (expected the --out folder of fusion.train)")
    assert "Traceback" not in proc.stderr
