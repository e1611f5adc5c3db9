"""Transparency (Art. 16 (draft 14), Art. 26 (draft 22)): what the algorithm does, why, how — from the deployed config and
model card — with the filing number and the hot-list rules in force (Art. 11, Art. 14 (draft 13): every rule with
its parameters, how manual changes are logged, how to verify a served hot list), as JSON for
programs and as a page for people."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from compliance import elderly, parameters, transparency
from compliance.articles import cite
from compliance.policy import FRONT_SCREEN, describe
from recsys.ranking.features import FEATURE_NAMES
from serving.deps import ServicesDep
from serving.services import Services

router = APIRouter(tags=["transparency"])
PRIVACY_CENTER = "/me"  # the privacy center's page (serving/web/me.py)

STAGES = [
    "User state: settings (personalization switch, minors mode), interest tags, what this session already showed",
    "Candidate retrieval: nearest items to the user's embedding in a Faiss index (personalized path only)",
    "Candidate sources for everyone: overall popularity and the editors' mainstream pool",
    "Filters: flagged and blocked items (feature library, manual blocks), fraud-risk items for users in elderly "
    "mode, items the user marked not interested (and their duplicates), items already seen, minor-unsafe items",
    "Ranking: a neural ranker scores candidates from interaction signals only (personalized path only)",
    "Policy pipeline: de-duplication, dispersal, front-screen mainstream slots, pins and boosts",
    "An explanation for every item; the list is logged before it is sent",
]
SIGNALS = [
    "items you rated or interacted with (history), and their similarity to other items",
    "item popularity and recency",
    "your interest tags (categories), which you can view, add, delete or mark not interested",
    "never: age, gender, occupation, ethnicity, religion, health, sexual orientation or other sensitive attributes",
]


def document(services: Services) -> dict:
    settings = services.settings
    catalog = services.catalog
    model_card = {
        "model_uri": settings.model_uri,
        "model_version": catalog.model_version if catalog else None,
        "retrieval": "implicit ALS embeddings + Faiss nearest-neighbour index",
        "ranker": "PyTorch MLP over interaction features",
        "features": list(getattr(catalog.bundle, "feature_names", [])) if catalog else [],
        "policy_hash": services.pipeline.policy_hash if services.pipeline else None,
    }
    return transparency.transparency_document(
        service_name=settings.service_name,
        provider=settings.provider_name,
        filing_number=settings.filing_number,
        model_card=model_card,
        policy_descriptions=[f"{p.title} ({', '.join(map(cite, p.articles))}): {p.text}" for p in describe(settings.policy)],
        signals_used=SIGNALS,
        stages=STAGES,
        switch_off_instructions=(
            f"Open My recommendations ({PRIVACY_CENTER}) and press \"Switch off Personalized\": from your next list you get "
            "the same non-personalized list as everyone in your situation (popularity and the editors' pool). Press "
            "\"Switch on Personalized\" to turn it back on. Programs send PUT /v1/users/{user_id}/settings with "
            '{"personalization": false}.'
        ),
        complaint_instructions=(
            f"Open My recommendations ({PRIVACY_CENTER}) and send the complaint form, or send POST /v1/complaints with kind "
            "complaint, report or appeal; you get an id, an acknowledgement deadline and a resolution deadline, and can "
            "follow it on the same page or at GET /v1/complaints/{id}."
        ),
        minors=settings.minors,
        user_options=user_options(settings),
        trending=settings.trending,
        log_retention_days=settings.logs.retention_days,
        surfaces=_surfaces(services),
    ) | {"privacy_center": PRIVACY_CENTER}


def _surfaces(services: Services) -> list[dict]:
    """Each surface's main parameters (DSA Art. 27): the policies that apply there, and the ranker's
    signals with the relative importance measured when the model was trained."""
    settings, catalog = services.settings, services.catalog
    policies = describe(settings.policy)
    front = settings.policy.front_screen
    by_surface = {surface: [p.title for p in policies if p.name != FRONT_SCREEN or surface in front.surfaces]
                  for surface in settings.surfaces}
    bundle = catalog.bundle if catalog else None
    importance = bundle.manifest.get("feature_importance") if bundle is not None else None
    names = list(bundle.feature_names) if bundle is not None else list(FEATURE_NAMES)
    return parameters.surface_parameters(settings.surfaces, by_surface, importance, names,
                                         sequential_source=bundle is not None and bundle.sequential is not None)


def user_options(settings) -> list[str]:
    """What each user can choose (Provisions Art. 17 (draft 15), Art. 19), in the words of the deployed config."""
    policy = settings.policy
    diversity, feedback = policy.session_diversity, policy.feedback
    return [
        "No onboarding step asks you to pick interest tags: every list works without any. Tags are an option "
        "you may use at any time (GET/POST/DELETE /v1/users/{user_id}/tags) (Art. 17 (draft 15)).",
        '"Not interested" and "fewer like this" on any item of a list: POST /v1/users/{user_id}/feedback with the '
        "list's request_id, the item_id and the kind. The item and every copy of its content leave all your later "
        "lists on every surface until you undo it (DELETE /v1/users/{user_id}/feedback/{item_id}); \"fewer like "
        f'this" also ranks that category lower for {feedback.fewer_like_this_days} days. '
        "GET /v1/users/{user_id}/feedback lists what is in force (Art. 17 (draft 15)).",
        f'"Broaden my feed": PUT /v1/users/{{user_id}}/settings with {{"broaden_feed": true}} lowers the share one '
        f"category may take of a session's items from {diversity.max_share:.0%} to "
        f"{diversity.broadened_max_share:.0%} (Art. 17 (draft 15)).",
        elderly.describe(settings.elderly),
        transparency.history_rights(settings.logs.retention_days),
    ]


@router.get("/v1/transparency")
def transparency_json(services: ServicesDep) -> dict:
    return document(services)


@router.get("/transparency", response_class=HTMLResponse)
def transparency_page(services: ServicesDep) -> HTMLResponse:
    return HTMLResponse(transparency.render_html(document(services)))
