"""`meterbook api-key`: a new key, shown once, and the catalog entry holding only its hash."""

from __future__ import annotations

import hashlib
import re

import yaml

from orchestration.cli import main


def test_api_key_prints_a_key_and_the_entry_with_its_sha256(capsys, tmp_path):
    assert main(["--home", str(tmp_path), "api-key", "gateway", "--customers", "acme", "c2"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"key \(shown once; give it to the producer\): (mbk_\S+)", out).group(1)
    entry_line = next(line for line in out.splitlines() if line.lstrip().startswith("- {"))
    entry = yaml.safe_load(entry_line.strip()[2:])
    assert entry == {
        "id": "gateway",
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "customers": ["acme", "c2"],
    }
    assert out.count(key) == 1  # the key once; the entry carries only its hash
    # a second key is another key
    main(["--home", str(tmp_path), "api-key", "gateway"])
    assert key not in capsys.readouterr().out
