"""The official fixtures travel with the tests, unchanged: every file the provenance README
lists is present and has the checksum recorded there."""

from __future__ import annotations

import hashlib
import re

from golden import official_fixtures


def _recorded() -> dict[str, str]:
    text = (official_fixtures() / "README.md").read_text()
    block = text.split("## Checksums (SHA-256)", 1)[1]
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", block, re.M)}


def test_every_official_fixture_is_present_and_unchanged() -> None:
    recorded = _recorded()
    assert len(recorded) >= 17
    on_disk = {p.name for p in official_fixtures().iterdir() if p.suffix in (".pt", ".json")}
    assert on_disk == set(recorded), f"files without a checksum or missing: {on_disk ^ set(recorded)}"
    for name, digest in recorded.items():
        assert hashlib.sha256((official_fixtures() / name).read_bytes()).hexdigest() == digest, name
