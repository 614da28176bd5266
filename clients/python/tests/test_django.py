"""A small Django project (settings made here, Django from PyPI) whose model's FileField is
stored on a real host through StowageStorage: saved, read back, listed and deleted, with the
request's user (or an explicit actor) in the host's ledger; and temp_file's cleanup."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Iterator

import pytest
import urllib3

from stowage_client import using

from .conftest import KEY, Host


@pytest.fixture(scope="module")
def project(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import django
    from django.conf import settings
    from django.core.management import call_command

    saved = {k: os.environ.get(k) for k in ("STOWAGE_API_KEY",)}
    os.environ.update(STOWAGE_API_KEY=KEY)

    def on_host(storage_class: str) -> dict:
        return {
            "BACKEND": "stowage_client.django.StowageStorage",
            "OPTIONS": {"url": host.url, "storage_class": storage_class, "development": True, "purpose": "django-test"},
        }

    db: Path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    settings.configure(
        SECRET_KEY="django-test-only",
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "tests.djapp"],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "stowage_client.django.ActorMiddleware",
        ],
        ROOT_URLCONF="tests.djapp.urls",
        STORAGES={"default": on_host("submission"), "submission": on_host("submission"), "scratch": on_host("scratch")},
    )
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def by_actor(records: list[dict]) -> set[tuple[str, str]]:
    return {(r["action"], r["actor"] or "") for r in records}


def test_a_model_file_is_saved_read_listed_and_deleted_with_the_actor_in_the_ledger(project, host: Host):
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client as Browser

    from stowage_client.django import get_submission_storage

    from .djapp.models import Submission

    browser = Browser()
    browser.force_login(User.objects.create_user("alice"))
    payload = b"patient_id,visit\n" + b"17,2024-01-02\n" * 1000
    r = browser.post("/upload", {"cohort": "VACS", "file": SimpleUploadedFile("p.csv", payload, "text/csv")})
    assert r.status_code == 200, r.content
    pk, name = r.json()["id"], r.json()["name"]
    assert name == "submissions/VACS/2024/patient/p.csv"

    # Read back through a streaming response (after the view returned: the file kept its actor).
    r = browser.get(f"/download/{pk}")
    assert b"".join(r.streaming_content) == payload
    # And through the model outside any request, for an actor named explicitly.
    with using(actor="dave"):
        with Submission.objects.get(pk=pk).file.open("rb") as f:
            assert f.read() == payload

    storage = get_submission_storage()
    assert storage.exists(name) and storage.size(name) == len(payload)
    assert storage.client.head("submission", name).content_type == "text/csv"
    carol = storage.as_actor("carol")
    assert "patient" in carol.listdir("submissions/VACS/2024")[0]
    assert "p.csv" in carol.listdir("submissions/VACS/2024/patient")[1]
    modified = storage.get_modified_time(name)
    assert modified.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - modified) < dt.timedelta(minutes=5)
    signed = urllib3.PoolManager().request("GET", storage.url(name))
    assert (signed.status, signed.data) == (200, payload)

    assert browser.post(f"/delete/{pk}").status_code == 200
    assert not storage.exists(name)

    seen = by_actor(host.ledger(name))
    for action, actor in [
        ("file_created", "alice"),
        ("file_accessed", "alice"),
        ("file_accessed", "dave"),
        ("file_accessed", "signed-url"),
        ("file_deleted", "alice"),
    ]:
        assert (action, actor) in seen, sorted(seen)
    assert ("listed", "carol") in by_actor(host.ledger("submissions/VACS/2024/patient/"))
    policy_records = [r for r in host.ledger(name) if r["action"] in ("file_created", "file_accessed")]
    assert [r.get("purpose") for r in policy_records if r["actor"] != "signed-url"] == ["django-test"] * 3


def test_temp_file_deletes_its_object_on_success_and_on_an_exception(project, host: Host):
    from django.core.files.base import ContentFile

    from stowage_client.django import get_scratch_storage, temp_file

    storage = get_scratch_storage()
    with temp_file("converted.csv", audit_id=123, content=ContentFile(b"a,b\n1,2\n")) as ok_path:
        assert ok_path.startswith("scratch/audit_123/") and storage.exists(ok_path)
    assert not storage.exists(ok_path)

    with pytest.raises(RuntimeError, match="conversion failed"):
        with temp_file("converted.csv", audit_id=123, content=ContentFile(b"a,b\n1,2\n")) as failed_path:
            assert storage.exists(failed_path)
            raise RuntimeError("conversion failed")
    assert not storage.exists(failed_path)

    for path in (ok_path, failed_path):
        actions = [r["action"] for r in host.ledger(path)]
        assert "work_copy_created" in actions and "work_copy_deleted" in actions, actions
