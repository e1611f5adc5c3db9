"""The articles this service answers to: the final Provisions (in force since 1 March 2022) with the
2021 draft's numbers as aliases, and the later texts it also implements.

Every control, document, response field, log record and filing cites an article by its FINAL number
("Art. 8"), adding the draft number where it differs ("Art. 17 (draft 15)"). The draft is kept as
the historical reference (the project began from it); `tests/test_citations.py` resolves every
citation in code, docs and responses against `FINAL` and `DRAFT_OF`.

Texts: 互联网信息服务算法推荐管理规定 (CAC, MIIT, MPS, SAMR; promulgated 31 Dec 2021, in force 1 Mar
2022; numbering checked against the published final text and the 2021 draft in the reference
folder). Where the final text softened or extended the draft, `note` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT = "Provisions on the Administration of Algorithmic Recommendation of Internet Information Services (final, in force 2022-03-01)"
TEXT_ZH = "互联网信息服务算法推荐管理规定（2022年3月1日起施行）"
DRAFT_TEXT = "the 2021 draft for comments (征求意见稿, 27 August 2021)"


@dataclass(frozen=True)
class Article:
    number: int  # in the final text
    topic: str
    draft: int | None  # the draft's number for the same duty; None when the final text added it
    note: str = ""


FINAL: dict[int, Article] = {a.number: a for a in (
    Article(1, "purpose and legal basis", 1),
    Article(2, "scope; what algorithmic recommendation is", 2),
    Article(3, "the regulators", 3),
    Article(4, "principles: fairness, openness and transparency", 4),
    Article(5, "industry self-regulation", 5),
    Article(6, "mainstream values; no unlawful use", 6),
    Article(7, "security responsibility and management systems", 7),
    Article(8, "periodic review of mechanisms, models, data and outcomes; no addictive models", 8),
    Article(9, "feature library of illegal and harmful information; labelling synthetic content", 9),
    Article(10, "user models and user tags", 10),
    Article(11, "front pages, hot lists, manual intervention and user choice", 11),
    Article(12, "de-duplication and dispersal; transparent, explainable rules", 12,
            "the final text encourages (鼓励) content de-duplication and dispersal where the draft required them"),
    Article(13, "news information services need a licence", None, "added in the final text"),
    Article(14, "no fake accounts or manipulation of lists, hot searches and rankings", 13),
    Article(15, "no unfair competition through algorithms", None, "added in the final text"),
    Article(16, "disclose the service and its basic principles, purpose and main mechanisms", 14),
    Article(17, "an option not based on personal characteristics, switching off, user tags; "
                "explaining decisions with a major impact", 15),
    Article(18, "minors: minors mode, no harmful content, no addiction", 16),
    Article(19, "the elderly: safe use, protection from fraud", None, "added in the final text"),
    Article(20, "workers: order dispatch, pay, working hours", 17),
    Article(21, "consumers: no unreasonable price discrimination", 18),
    Article(22, "complaints and reports", 26),
    Article(23, "graded and classified management", 19),
    Article(24, "filing within ten working days", 20),
    Article(25, "filing changes and cancellation", 21),
    Article(26, "showing the filing number", 22),
    Article(27, "security assessment", 23),
    Article(28, "supervision and inspection; keeping network logs according to law", 24,
            "log retention 'according to law': at least six months (Cybersecurity Law Art. 21(3))"),
    Article(29, "confidentiality of those who inspect", 25),
    # 30-34: legal liability and supplementary provisions (the draft's 27-29); not cited by this service.
    Article(30, "legal liability", None),
    Article(31, "legal liability", None),
    Article(32, "legal liability", None),
    Article(33, "legal liability", None),
    Article(34, "interpretation", None),
    Article(35, "entry into force: 1 March 2022", 30),
)}

DRAFT_OF: dict[int, int] = {a.number: a.draft for a in FINAL.values() if a.draft is not None}
FINAL_OF_DRAFT: dict[int, int] = {draft: final for final, draft in DRAFT_OF.items()}


def cite(number: int) -> str:
    """'Art. 17 (draft 15)' for a final article whose draft number differs, 'Art. 8' otherwise."""
    article = FINAL[number]
    if article.draft is not None and article.draft != number:
        return f"Art. {number} (draft {article.draft})"
    return f"Art. {number}"


def legal_basis() -> dict[str, object]:
    """Which text this service's citations follow, for the transparency page and the filing: the final
    Provisions, article numbers as in `FINAL`, the 2021 draft's numbers given as aliases."""
    return {
        "text": TEXT,
        "text_zh": TEXT_ZH,
        "draft_aliases": True,
        "draft": DRAFT_TEXT,
        "citation_form": f"{cite(17)}: final article 17, numbered 15 in the draft",
    }


# Later texts the service implements, cited by name (not by the Provisions' numbers).
LATER_TEXTS = {
    "minors_guideline_2024": "移动互联网未成年人模式建设指南 (CAC, 2024): age bands, daily limits, curfew, rest reminders, guardians",
    "qinglang_2024_algorithms": "清朗·网络平台算法典型问题治理 (2024-25): hot-list rules and logs, 'not interested', information cocoons",
    "dsa_27": "EU Digital Services Act Art. 27: main parameters of recommender systems and their relative importance",
    "dsa_38": "EU Digital Services Act Art. 38: at least one option not based on profiling (very large platforms)",
    "csl_21": "Cybersecurity Law Art. 21(3): network logs kept no less than six months",
}
