"""The comparison page in a real browser: headless Chromium (Debian's `chromium`) opens it, every
image decodes, the console stays clean, the metrics table lists every family; screenshots saved."""

from __future__ import annotations

import pytest
import torch

from genlab.models import MODELS
from genlab.models.pca import PCA
from genlab.report.browser import find_chromium, inspect_page
from genlab.workflows.compare import compare

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium is not installed (apt-get install chromium; .ci/run does it)")


class Exploding(PCA):
    """Builds like PCA, then fails in training: the page must report it and still decode."""

    family = "exploding"
    description = "fails in training (test family)"

    def fit_closed_form(self, data):
        raise FloatingPointError("exploded on purpose")


def check(page, shot, families):
    result = inspect_page(page, screenshot=shot)
    assert result["errors"] == []
    assert result["images"] and all(i["complete"] and i["naturalWidth"] > 0 for i in result["images"]), \
        [i for i in result["images"] if not i["naturalWidth"]]
    assert all(len(i["alt"]) >= 10 for i in result["images"])
    rows = [r.removesuffix("too short").strip() for r in result["table_rows"]]  # a short run's badge beside its name
    assert rows == ["real data (train vs test)", *families]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result


def test_digits_page_in_chromium(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "exploding", Exploding)
    res = compare("digits", ["pca", "ae", "exploding"], steps=20, out=tmp_path / "cmp", progress=False,
                  settings={"ae": {"latent_dim": 2}})
    assert [e["status"] for e in res["families"]] == ["ok", "ok", "failed"]
    result = check(res["report"], tmp_path / "report.png", ["pca", "ae", "exploding"])
    # data + 2 sample grids, 2 reconstructions, 2 latent maps, 2 x (explore interpolation + map)
    assert len(result["images"]) == 11
    print(f"screenshot: {tmp_path / 'report.png'}")


def test_two_d_page_in_chromium(tmp_path):
    torch.manual_seed(0)
    res = compare("25gaussians", ["pca", "ae"], steps=20, out=tmp_path / "cmp2", n=300, progress=False,
                  settings={"pca": {"latent_dim": 1}, "ae": {"latent_dim": 2}})
    assert all(e["status"] == "ok" for e in res["families"])
    assert {"modes", "mmd", "swd"} <= set(res["families"][0]["metrics"])
    result = check(res["report"], tmp_path / "report-2d.png", ["pca", "ae"])
    # data scatter + density, per family scatter + density, 2 latent maps, 2 x (explore interpolation + map)
    assert len(result["images"]) == 2 + 2 * 2 + 2 + 2 * 2
    print(f"screenshot: {tmp_path / 'report-2d.png'}")
