"""img2pdf: the conversion on generated images, then the whole path through Hearth.

The end-to-end test starts a real coordinator and a real worker running this handler
as processes, submits with the real CLI, and checks the PDF that comes back.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from examples.img2pdf.convert import NotAnImage, images_to_pdf


def png(size: tuple[int, int] = (40, 30), color: str = "red", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()


def jpeg(size: tuple[int, int] = (64, 48), color: str = "blue") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


def page_count(pdf: bytes) -> int:
    """Count page objects (``/Type /Page``, not ``/Pages``) in a PDF."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def page_sizes(pdf: bytes) -> list[tuple[float, float]]:
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    return [(float(w), float(h)) for w, h in boxes]


def test_one_page_per_image_in_order() -> None:
    pdf = images_to_pdf([("a.png", png((40, 30))), ("b.jpg", jpeg((64, 48))),
                         ("c.png", png((10, 20), "green"))])
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 3
    assert page_sizes(pdf) == [(40, 30), (64, 48), (10, 20)]


def test_transparency_and_palette_images_are_flattened() -> None:
    rgba = png((8, 8), "#ff000080", mode="RGBA")
    palette = io.BytesIO()
    Image.new("P", (8, 8), 3).save(palette, format="PNG", transparency=3)
    grey = png((8, 8), "white", mode="L")
    pdf = images_to_pdf([("a", rgba), ("p", palette.getvalue()), ("g", grey)])
    assert page_count(pdf) == 3


def test_not_an_image_names_the_input() -> None:
    with pytest.raises(NotAnImage, match=r"notes\.txt is not an image"):
        images_to_pdf([("ok.png", png()), ("notes.txt", b"hello")])


def test_no_images() -> None:
    with pytest.raises(NotAnImage, match="at least one"):
        images_to_pdf([])


@pytest.mark.slow
def test_end_to_end_through_coordinator_and_worker(tmp_path: Path) -> None:
    from helpers import CliCoordinator, WorkerProcess, hearth

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "a.png").write_bytes(png((40, 30)))
    (tmp_path / "b.jpg").write_bytes(jpeg((64, 48)))
    data = tmp_path / "data"
    with CliCoordinator(data) as coordinator, \
            WorkerProcess(data, "examples.img2pdf.img2pdf", cwd=repo) as worker:
        done = hearth("submit", "--kind", "img2pdf", "--json", '{"name": "scan"}',
                      "--blob", str(tmp_path / "a.png"), "--blob", str(tmp_path / "b.jpg"),
                      "--wait", "-o", "json", data=data)
        assert done.returncode == 0, (done.stderr, coordinator.log_tail(), worker.log_tail())
        job = json.loads(done.stdout)
        assert job["state"] == "succeeded"
        assert job["result"]["payload"] == {"pages": 2, "name": "scan.pdf"}
        (blob,) = job["result"]["blobs"]
        assert blob["name"] == "scan.pdf"
        fetched = hearth("blob", "get", blob["digest"], "-o", str(tmp_path / "out.pdf"),
                         data=data)
        assert fetched.returncode == 0, fetched.stderr

        bad = tmp_path / "notes.txt"
        bad.write_text("not an image")
        failed = hearth("submit", "--kind", "img2pdf", "--blob", str(bad), "--wait", data=data)
        assert failed.returncode == 1
        assert "notes.txt is not an image" in failed.stderr
        assert "after 1 attempt:" in failed.stderr  # not retried: it would fail again
    pdf = (tmp_path / "out.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) == blob["size"]
    assert page_count(pdf) == 2
