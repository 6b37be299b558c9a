"""A run killed mid-training and resumed with --resume ends with the same predictions and metrics (CPU)."""
import pandas as pd
import pytest

import fusion.engine as engine
from fusion.train import main
from tiny_training_cohort import TINY_ARGS, write_tiny_cohort


class Killed(RuntimeError):
    """Stands in for SIGKILL: raised from inside the training loop."""


def test_killed_and_resumed_run_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cohort = write_tiny_cohort(tmp_path / "data")
    args = [str(cohort), *TINY_ARGS, "--modalities", "2d", "--epochs", "3"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0

    real = engine.train_one_epoch
    calls = {"n": 0}

    def dies_on_fifth_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # fold 0 finished (3 epochs); fold 1 killed during its 2nd epoch
            raise Killed("killed")
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_one_epoch", dies_on_fifth_epoch)
    with pytest.raises(Killed):
        main([*args, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert not (tmp_path / "killed" / "oof_predictions.csv").exists()

    resumed_calls = {"n": 0}

    def counting(*a, **k):
        resumed_calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_one_epoch", counting)
    assert main([*args, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    assert resumed_calls["n"] == 2  # fold 0 skipped, fold 1 continued from its epoch-0 checkpoint

    full = pd.read_csv(tmp_path / "full" / "oof_predictions.csv")
    again = pd.read_csv(tmp_path / "killed" / "oof_predictions.csv")
    pd.testing.assert_frame_equal(full, again, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "metrics.csv"),
                                  pd.read_csv(tmp_path / "killed" / "metrics.csv"), check_exact=True)


def test_resume_refuses_changed_settings(tmp_path, capsys):
    cohort = write_tiny_cohort(tmp_path / "data", n=16)
    args = [str(cohort), *TINY_ARGS, "--modalities", "2d", "--epochs", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert main([*args, "--resume", "--lr", "0.5"]) == 2
    assert "setting 'lr' was 0.001" in capsys.readouterr().err
