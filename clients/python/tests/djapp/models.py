"""A model whose file lives on the services host, at the original's submission path."""

from django.core.files.storage import storages
from django.db import models

from stowage_client.django import submission_path


def submission_storage():
    return storages["submission"]


def upload_to(instance: "Submission", filename: str) -> str:
    return submission_path(instance.cohort, 2024, "patient", filename)


class Submission(models.Model):
    cohort = models.CharField(max_length=50)
    file = models.FileField(storage=submission_storage, upload_to=upload_to)

    class Meta:
        app_label = "djapp"
