"""Data files shipped with the package (the demo cohort's ``cohort_schema.yaml``)."""
