"""Generated docs are current: README tables and the metadata schema match their declarations."""

import re

import pytest

from service import doc_tables
from service.errors import ERRORS
from service.settings import Settings


def test_readme_tables_are_current():
    readme = doc_tables.README.read_text()
    assert doc_tables.render_readme(readme) == readme, "run: python -m service.doc_tables --write"


def test_metadata_schema_is_current():
    assert doc_tables.METADATA_SCHEMA.read_text() == doc_tables.metadata_schema(), (
        "run: python -m service.doc_tables --write"
    )


def test_every_setting_and_error_code_is_in_the_readme():
    readme = doc_tables.README.read_text()
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in readme
    for kind in ERRORS:
        for code in kind.codes:
            assert f"`{code}`" in readme


def test_a_stale_table_is_found():
    readme = doc_tables.README.read_text()
    stale = readme.replace("| `PORT` | `8000`", "| `PORT` | `8080`")
    assert doc_tables.render_readme(stale) == readme
    with pytest.raises(ValueError, match="settings"):
        doc_tables.render_readme(readme.replace("<!-- settings:end -->", ""))


def test_every_link_within_the_readme_finds_its_heading():
    readme = doc_tables.README.read_text()
    anchors = {doc_tables.anchor(h) for h in doc_tables.headings(readme)}
    links = set(re.findall(r"\]\(#([^)]+)\)", readme))
    assert links and links <= anchors, links - anchors


def test_the_contents_follow_the_headings():
    readme = doc_tables.README.read_text()
    moved = readme.replace("## How a request is served", "## How a request is answered")
    assert "(#how-a-request-is-answered)" in doc_tables.render_readme(moved)
    assert doc_tables.anchor("Classifying a folder: `classify-images` and the Python client") == (
        "classifying-a-folder-classify-images-and-the-python-client"
    )
