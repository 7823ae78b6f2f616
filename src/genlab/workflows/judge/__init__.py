"""Ask people: a pairwise judging page for samples, human scores with intervals, FD's agreement with them.

    study, _ = open_or_create(["runs/demo/vae", "runs/demo/gan"], "judge.sqlite", real=True)
    serve(study, port=8765)                  # the page and its JSON API (needs the `web` extra)
    scores = study_scores(study)             # Bradley-Terry strengths, real-vs-fake error rates

`study` stores samples, raters and judgements in SQLite; `scores` turns judgements into numbers;
`server` and `page` are the web app (Starlette under uvicorn, imported only when serving).
See docs/judge.md.
"""

from .scores import agreement, fit_bradley_terry, format_scores, human_rankings, study_scores
from .study import Rejected, Study, create_study, open_or_create


def serve(study, host: str = "127.0.0.1", port: int = 8765, announce=print) -> None:
    """Serve the study's page until interrupted (imports Starlette and uvicorn here)."""
    from .server import serve as _serve

    _serve(study, host=host, port=port, announce=announce)


__all__ = ["Study", "Rejected", "create_study", "open_or_create", "serve", "study_scores", "format_scores",
           "fit_bradley_terry", "human_rankings", "agreement"]
