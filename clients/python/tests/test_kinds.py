"""The client knows every error kind the host's wire protocol names (host/api/src/lib.rs),
so no kind reaches a caller as a bare `StowageError`."""

from __future__ import annotations

import re

from stowage_client import errors

from .conftest import REPO


def test_every_error_kind_of_the_api_has_its_exception():
    source = (REPO / "host" / "api" / "src" / "lib.rs").read_text()
    body = source[source.index("pub const fn as_str") : source.index("pub fn parse")]
    kinds = set(re.findall(r'=> "([a-z-]+)"', body))
    assert len(kinds) >= 18, kinds
    missing = kinds - set(errors._BY_KIND)
    assert not missing, f"no exception for {sorted(missing)}"
    for kind in kinds:
        e = errors.from_answer(418, f'{{"error": "{kind}", "message": "m"}}'.encode(), None, None)
        assert type(e) is errors._BY_KIND[kind] and e.kind == kind
