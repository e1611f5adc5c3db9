"""Every citation of the Provisions resolves against one table (issue 14): `compliance.articles`.

Code, docs, templates and config cite the FINAL Provisions (in force 2022) by number, with the 2021
draft's number as an alias where it differs: "Art. 17 (draft 15)", "Art. 8", "Art. 19" (added in the
final text, no alias). This test scans the repository for "Art. N" / "Article N" (citations of other
texts, written "DSA Art. 27", "PIPL Art. 47" or "Cybersecurity Law Art. 21", are skipped) and checks each one: N is a
final article; the alias is there exactly when the table has a different draft number, and it names
that number; lists ("Art. 11, 13", "Art. 19-20") are written as one citation per article. The
structured fields (`PolicyText.articles`, the hot-list rules' `article`, the filing's safeguards)
resolve too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from compliance.articles import DRAFT_OF, FINAL, FINAL_OF_DRAFT, cite

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".html", ".toml", ".j2", ".jinja"}
SKIPPED_DIRS = (".venv/", "data/raw/", "node_modules/")
SELF = {"tests/test_citations.py"}  # its examples of wrong citations are checked by test_the_check_itself

# "Art. 17", "Art 17", "Art.17", "Article 17", with an optional " (draft 15)"; not after "DSA ",
# "Act ", "Law ", "CSL " or "PIPL " (other texts' articles: "DSA Art. 27", "Cybersecurity Law Art. 21",
# "PIPL Art. 47": the Personal Information Protection Law).
CITATION = re.compile(
    r"(?<![A-Za-z])(?<!DSA )(?<!Act )(?<!Law )(?<!CSL )(?<!PIPL )(?P<word>Art\. ?|Art |Article )(?P<n>\d+)(?![A-Za-z0-9])"
    r"(?P<alias>[ \t]*\(draft (?P<m>\d+)\))?"
)
# a second bare number right after a citation: "Art. 11, 13", "Art. 19-20", "Art. 10 and 15"
LIST_TAIL = re.compile(r"(?:,[ \t]*|[ \t]*[-–][ \t]*|[ \t]+and[ \t]+)\d+\b(?![ \t]*(?:working|days|months|min))")
# a "(draft M)" not attached to a citation, with a number that no final article has as its draft
LOOSE_ALIAS = re.compile(r"\(draft (\d+)\)")


def scanned_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    out = []
    for name in listed:
        path = ROOT / name
        if name.startswith(SKIPPED_DIRS) or name in SELF or not path.is_file():
            continue
        if name.startswith("benchmarks/results/") and not name.startswith("benchmarks/results/reference/"):
            continue
        if path.suffix in SUFFIXES or "template" in name:
            out.append(path)
    return out


def problems_in(text: str) -> list[str]:
    """What is wrong with the citations in one text (empty when all resolve). Citations written as
    regular expressions in tests (r"Art\\. 28 \\(draft 24\\)") are read as the text they match."""
    text = text.replace("Art\\.", "Art.").replace("\\(draft", "(draft").replace("\\)", ")")
    found = []
    for match in CITATION.finditer(text):
        number, alias = int(match["n"]), match["m"]
        where = f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        if number not in FINAL:
            found.append(f"{where}: no article {number} in the final text")
            continue
        draft = FINAL[number].draft
        wanted_alias = draft is not None and draft != number
        if wanted_alias and alias is None:
            found.append(f"{where}: cite the draft alias, {cite(number)!r}")
        elif alias is not None and (not wanted_alias or int(alias) != draft):
            found.append(f"{where}: wrong draft alias, {cite(number)!r}")
        if LIST_TAIL.match(text, match.end()):
            found.append(f"{where}: a list of numbers; write one citation per article")
    for match in LOOSE_ALIAS.finditer(text):
        if int(match[1]) not in FINAL_OF_DRAFT:
            found.append(f"line {text.count(chr(10), 0, match.start()) + 1}: no final article has draft number "
                         f"{match[1]}")
    return found


def test_the_table_is_consistent():
    assert all(FINAL[n].number == n for n in FINAL)
    assert len(set(DRAFT_OF.values())) == len(DRAFT_OF)  # one final article per draft number
    assert cite(17) == "Art. 17 (draft 15)" and cite(8) == "Art. 8" and cite(19) == "Art. 19"
    assert cite(28) == "Art. 28 (draft 24)" and cite(22) == "Art. 22 (draft 26)"


@pytest.mark.parametrize("text, ok", [
    ("the switch (Art. 17 (draft 15))", True),
    ("review (Art. 8)", True),
    ("elderly mode (Art. 19)", True),
    ("DSA Art. 27 and Cybersecurity Law Art. 21(3)", True),
    ("CSL Art. 21", True),
    ("the switch (Art. 17)", False),  # alias missing
    ("logs (Art. 28 (draft 23))", False),  # wrong alias
    ("Art. 40", False),  # no such article
    ("(Art. 11, 13)", False),  # a list
    ("(Art. 24-25)", False),
    ("Article 16 (draft 14)", True),
    ("Art. 24 (draft 20) para. 1: within ten working days", True),
    (r'match=r"minimum of 180 days.*Art\. 23"', False),  # a citation in a regular expression
    (r'match=r"minimum of 180 days.*Art\. 28 \(draft 24\)"', True),
])
def test_the_check_itself(text, ok):
    assert (problems_in(text) == []) is ok, problems_in(text)


def test_every_citation_in_code_and_docs_resolves():
    files = scanned_files()
    assert len(files) > 100  # the scan sees the repository
    failures = [f"{path.relative_to(ROOT)} {problem}" for path in files
                for problem in problems_in(path.read_text(encoding="utf-8", errors="replace"))]
    assert not failures, f"{len(failures)} citations do not resolve:\n" + "\n".join(failures[:80])


def test_structured_article_fields_resolve():
    from compliance.filing import DEFAULT_SAFEGUARDS
    from compliance.policy import PolicyConfig, describe
    from compliance.trending import TRENDING_RULES

    texts = describe(PolicyConfig())
    assert texts and all(t.articles and set(t.articles) <= set(FINAL) for t in texts)
    for rule in TRENDING_RULES:
        assert rule.article and not problems_in(rule.article), rule
    for name, (article, _) in DEFAULT_SAFEGUARDS.items():
        assert article and not problems_in(article), name
