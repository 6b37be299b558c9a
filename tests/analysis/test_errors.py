"""analysis.errors: one-line warnings for the command-line tools."""


def test_plain_warnings_are_one_line_without_source(capsys):
    import warnings

    from analysis.errors import AnalysisWarning, plain_warnings

    saved = warnings.formatwarning
    try:
        plain_warnings()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("3 image(s) missing", AnalysisWarning)
        assert capsys.readouterr().err == "warning: 3 image(s) missing\n"
    finally:
        warnings.formatwarning = saved
