"""The shipped TF Serving model server configs: the default one works after the first export, the canary one
lists two versions whose labels it serves, and the README shows them in that order."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _versions_and_labels(text: str) -> tuple[set[int], dict[str, int]]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    versions = {int(v) for v in re.findall(r"\bversions:\s*(\d+)", body)}
    labels = dict((k, int(v)) for k, v in re.findall(r'key:\s*"(\w+)"\s*value:\s*(\d+)', body))
    return versions, labels


def test_the_default_config_serves_the_latest_version_from_the_first_export_on():
    text = (ROOT / "serving" / "models.config").read_text()
    versions, labels = _versions_and_labels(text)
    assert versions == set() and labels == {}  # nothing to wait for: no specific version, no label
    assert re.search(r"latest\s*{\s*num_versions:\s*1\s*}", text)
    assert 'base_path: "/models/osteo"' in text


def test_the_canary_config_labels_only_versions_it_loads():
    versions, labels = _versions_and_labels((ROOT / "serving" / "models.canary.config").read_text())
    assert versions == {1, 2} and labels == {"stable": 1, "canary": 2}


def test_the_readme_serves_the_default_config_before_the_canary():
    readme = (ROOT / "README.md").read_text()
    default = readme.index('source="$PWD/serving/models.config"')
    canary = readme.index('source="$PWD/serving/models.canary.config"')
    assert readme.index("osteo export --run runs/x --name osteo --version 1") < default < canary
    assert readme.index("osteo export --run runs/y --name osteo --version 2") < canary
