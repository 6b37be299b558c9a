"""analysis.errors: one-line warnings for the command-line tools."""


def test_plain_warnings_are_one_line_without_source():
    import warnings

    from analysis.errors import AnalysisWarning, plain_warnings

    saved = warnings.formatwarning
    try:
        plain_warnings()  # what Python's default showwarning prints goes through formatwarning
        text = warnings.formatwarning(AnalysisWarning("3 image(s) missing"), AnalysisWarning,
                                      "/work/main/fusion/train.py", 316, "dataset = MultimodalDataset(...)")
        assert text == "warning: 3 image(s) missing\n"
    finally:
        warnings.formatwarning = saved
