"""User images from a folder: loose images, or one sub-folder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .arrays import split_indices
from .lazy import ImageFiles, should_stream
from .spec import DataSpec, Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _parse_size(size, path) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        if isinstance(size, str):
            size = [int(s) for s in size.lower().replace("x", ",").split(",")]
        h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[-1]))
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{path}: size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise DataError(f"{path}: size must be positive, got {size!r}")
    return h, w


def load_image_folder(path, size=None, mode: str | None = None, test_fraction: float = 0.2,
                      seed: int = 0, stream: bool | None = None) -> Dataset:
    """Images (png, jpg, jpeg, bmp, gif, webp) as N x C x H x W floats in [0, 1].

    Images directly in `path` have no labels; one sub-folder per class gives labels,
    with classes named after the sub-folders (sorted). `mode` is 'L' (grayscale) or
    'RGB'; by default 'L' when every image is grayscale. `size` (int or (H, W))
    resizes; without it all images must have the same size. Alpha is dropped; a GIF
    gives its first frame. A seeded `test_fraction` is held out for testing.
    `stream=True` (or None and more than `lazy.stream_threshold()` bytes of decoded images)
    keeps the files on disk and decodes them as batches are read (`genlab.data.lazy`).
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"no such folder: {path}")
    if mode not in (None, "L", "RGB"):
        raise DataError(f"{path}: mode must be 'L' or 'RGB', got {mode!r}")
    hw = _parse_size(size, path)

    loose = _images_in(path)
    classes = [(d.name, _images_in(d)) for d in sorted(path.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    classes = [(name, files) for name, files in classes if files]
    if loose and classes:
        raise DataError(f"{path}: has both loose images ({loose[0].name}) and class sub-folders "
                        f"({classes[0][0]}/); use one or the other")
    files = loose or [f for _, fs in classes for f in fs]
    if not files:
        raise DataError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                        "directly or in one sub-folder per class)")
    labels = None if loose else np.concatenate([np.full(len(fs), i, np.int64) for i, (_, fs) in enumerate(classes)])

    first, _ = read_images(files[:1], path, mode, hw)
    if should_stream(stream, len(files), first.shape[1:]):
        mode = _check_headers(files, path, mode, hw)
        shape = (1 if mode == "L" else 3, *first.shape[2:])
        x = ImageFiles(files, path, mode, hw, shape)
        split = x.take
    else:
        x, mode = read_images(files, path, mode, hw)
        split = lambda i: torch.from_numpy(x[i])  # noqa: E731

    itr, ite = split_indices(len(x), test_fraction, seed, path)
    names = [name for name, _ in classes]
    spec = DataSpec("image", tuple(x.shape[1:]), len(names), names, name=path.name, levels=256)
    t = torch.from_numpy
    return Dataset(split(itr), split(ite), spec,
                   t(labels[itr]) if labels is not None else None,
                   t(labels[ite]) if labels is not None else None, location=str(path))


def read_images(files: list[Path], path: Path, mode: str | None = None, hw=None) -> tuple[np.ndarray, str]:
    """The images in `files` as one N x C x H x W float32 array in [0, 1], and the mode used
    ('L' when every image is grayscale unless `mode` says otherwise). Without `hw` all
    images must have the same size; with it they are resized (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{f}: cannot read this image ({type(e).__name__}: {e})") from None
    if mode is None:
        mode = "L" if all(_is_gray(im) for im in images) else "RGB"
    if hw is None:
        for f, im in zip(files, images):
            if im.size != images[0].size:
                (w0, h0), (w1, h1) = images[0].size, im.size
                raise DataError(f"{path}: images differ in size ({files[0].name} is {h0}x{w0}, "
                                f"{f.relative_to(path)} is {h1}x{w1}); pass size= to resize them all")
    arrays = []
    for im in images:
        im = _to_mode(im, mode)
        if hw is not None and im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    x = np.stack(arrays)
    return (x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0, mode


def _check_headers(files, path: Path, mode: str | None, hw) -> str:
    """For files read later (streamed): every one opens as an image, all have one size unless `hw`
    resizes them (the rule `read_images` applies in memory), and the mode: `mode`, else 'L' when
    every image is grayscale, else 'RGB'. Headers only, except palette images."""
    from PIL import Image, UnidentifiedImageError

    gray, size0 = mode is None, None  # gray: still every image grayscale (when the mode is ours to pick)
    for f in files:
        try:
            with Image.open(f) as im:
                if hw is None:
                    size0 = size0 or im.size
                    if im.size != size0:
                        (w0, h0), (w1, h1) = size0, im.size
                        raise DataError(f"{path}: images differ in size ({files[0].name} is {h0}x{w0}, "
                                        f"{f.relative_to(path)} is {h1}x{w1}); pass size= to resize them all")
                if gray and not _is_gray(im):
                    gray = False
        except DataError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{f}: cannot read this image ({type(e).__name__}: {e})") from None
        if hw is not None and not gray:
            break  # nothing more to learn from the headers
    return mode or ("L" if gray else "RGB")


def _is_gray(im) -> bool:
    if im.mode in GRAY_MODES:
        return True
    if im.mode == "P":
        rgb = np.asarray(im.convert("RGB"))
        return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return False


def _to_mode(im, mode):
    if im.mode.startswith("I") and mode == "L":  # 16-bit grayscale: scale (Pillow would clip)
        from PIL import Image

        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F") and mode == "RGB":
        return _to_mode(im, "L").convert("RGB")
    return im.convert(mode)
