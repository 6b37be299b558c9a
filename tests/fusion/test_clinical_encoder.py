"""fusion.late_fusion.ClinicalEncoder: what a bundle stores encodes a new patient as training did."""
import numpy as np
import pandas as pd

from fusion.late_fusion import ClinicalEncoder


def test_stored_encoder_encodes_like_the_fitted_one_for_numeric_and_boolean_levels():
    # ordinal grades and scores with integer levels (Adler grade 0-3, elasticity 1-5), a binary 0/1 and a
    # True/False column, a categorical with text levels, a continuous variable; some values missing
    frame = pd.DataFrame({
        "adler_grade": pd.Categorical([0, 1, 2, 3, None, 2, 1, 0], categories=[0, 1, 2, 3], ordered=True),
        "elasticity": [1.0, 2.0, 5.0, 4.0, 3.0, np.nan, 2.0, 1.0],
        "necrosis": pd.Categorical([0, 1, 0, 1, 1, 0, None, 0], categories=[0, 1]),
        "hilum": [True, False, True, None, False, True, True, False],
        "margin": ["smooth", "irregular", None, "smooth", "ill-defined", "smooth", "irregular", "smooth"],
        "age": [50, 61, 34, np.nan, 70, 45, 39, 58],
    })
    types = {"adler_grade": ("ordinal", (0, 1, 2, 3)), "elasticity": ("ordinal", (1, 2, 3, 4, 5)),
             "necrosis": ("binary", (0, 1)), "hilum": ("binary", (False, True)),
             "margin": ("categorical", ("smooth", "irregular", "ill-defined")), "age": ("continuous", None)}
    train = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    fitted = ClinicalEncoder(types).fit(frame, train)
    X = fitted.transform(frame)
    stored = ClinicalEncoder.from_dict(fitted.to_dict())
    assert np.array_equal(stored.transform(frame), X)
    # the ordinal columns carry the grades (standardised), not the training mean for every row
    assert np.unique(np.delete(X[:, 0], 4)).size == 4 and np.unique(np.delete(X[:, 2], 5)).size == 5
    # a new patient typed as text (a form, a csv read without dtypes) gets the same row
    typed = frame.astype(object).where(frame.notna(), None).map(lambda v: v if v is None else str(v))
    typed["elasticity"] = ["1", "2", "5", "4", "3", None, "2", "1"]
    typed["age"] = frame["age"]
    assert np.allclose(stored.transform(typed), X)
