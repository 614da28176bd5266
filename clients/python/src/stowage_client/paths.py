"""The original application's path helpers, with the same shapes."""

from __future__ import annotations


def submission_path(cohort: str, year: "int | str", file_type: str, name: str) -> str:
    """`submissions/{cohort}/{year}/{file_type}/{name}`, e.g.
    `submissions/VACS/2024/patient/patient_data_v2.csv`."""
    return f"submissions/{cohort}/{year}/{file_type}/{name}"


def scratch_path(audit_id: "int | str", name: str) -> str:
    """`scratch/audit_{audit_id}/{name}`, e.g. `scratch/audit_123/converted_data.duckdb`."""
    return f"scratch/audit_{audit_id}/{name}"
