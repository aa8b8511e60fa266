"""The README is built from docs/: every built-in element type has its page, and the README
holds every page (run `bash docs/build_readme.sh` after editing docs/)."""

from tests.project.docs_scripts import ROOT, docs_script


def element_pages():
    return docs_script("element_pages")


def test_every_element_type_has_a_page_and_every_page_a_type():
    listed, problems = element_pages().ordered_pages()
    assert problems == []
    assert len(listed) == len(list((ROOT / "docs" / "elements").glob("*.md")))


def test_a_type_without_a_page_is_named(tmp_path, monkeypatch):
    pages = element_pages()
    (tmp_path / "start_end.md").write_text("# `start` and `end`\n")
    monkeypatch.setattr(pages, "PAGES", tmp_path)
    _, problems = pages.ordered_pages()
    assert "element type `llm_text` has no page in docs/elements/" in problems


def test_the_readme_holds_every_element_page():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs" / "elements").glob("*.md"):
        body = page.read_text().replace("\n#", "\n###")
        body = "##" + body if body.startswith("#") else body
        assert body.strip() in readme, f"{page.name} changed: run bash docs/build_readme.sh"
