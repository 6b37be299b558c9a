"""fusion.cache: content-keyed, atomic, never stale."""
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from analysis.errors import ImageError
from fusion.cache import ImageCache, load_image_cached
from fusion.images import load_image

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "images"


def test_miss_then_hit_returns_the_same_pixels_as_direct_decoding(tmp_path):
    cache = ImageCache(tmp_path / "c")
    direct = load_image(FIX / "rgb.png", size=16, channels=3)
    first = load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache)
    second = load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first, direct) and torch.equal(second, direct)
    assert len(list((tmp_path / "c").glob("*/*.npy"))) == 1
    assert not list((tmp_path / "c").glob("*/.tmp-*"))


def test_key_depends_on_content_and_parameters(tmp_path):
    cache = ImageCache(tmp_path / "c")
    load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache)
    load_image_cached(FIX / "rgb.png", size=8, channels=3, cache=cache)
    load_image_cached(FIX / "rgb.png", size=16, channels=1, cache=cache)
    load_image_cached(FIX / "rgb.png", size=16, channels=3, resize="stretch", cache=cache)
    assert cache.misses == 4
    # same path, new content -> miss, new pixels (never stale)
    img = tmp_path / "x.png"
    shutil.copy(FIX / "grey8.png", img)
    a = load_image_cached(img, size=16, cache=cache)
    shutil.copy(FIX / "palette.png", img)
    b = load_image_cached(img, size=16, cache=cache)
    assert cache.misses == 6 and not torch.equal(a, b)
    # renamed copy of known content -> hit
    shutil.copy(FIX / "rgb.png", tmp_path / "renamed.png")
    load_image_cached(tmp_path / "renamed.png", size=16, channels=3, cache=cache)
    assert cache.hits == 1


def test_unreadable_entry_is_a_miss_and_is_rewritten(tmp_path):
    cache = ImageCache(tmp_path / "c")
    ref = load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache)
    (entry,) = list((tmp_path / "c").glob("*/*.npy"))
    entry.write_bytes(b"garbage")
    again = load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache)
    assert torch.equal(ref, again) and cache.misses == 2
    assert torch.equal(load_image_cached(FIX / "rgb.png", size=16, channels=3, cache=cache), ref)


def test_concurrent_writers_of_the_same_key_are_safe(tmp_path):
    cache = ImageCache(tmp_path / "c")
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda _: load_image_cached(FIX / "busi_benign_1.png", size=32, channels=1,
                                                        cache=cache), range(8)))
    assert all(torch.equal(o, out[0]) for o in out)
    assert len(list((tmp_path / "c").glob("*/*.npy"))) == 1
    assert not list((tmp_path / "c").glob("*/.tmp-*"))


def test_errors_are_image_errors_and_nothing_is_cached(tmp_path):
    cache = ImageCache(tmp_path / "c")
    with pytest.raises(ImageError, match="patient P1, modality '2d'.*truncated"):
        load_image_cached(FIX / "truncated.png", size=8, cache=cache, patient_id="P1", modality="2d")
    assert not list(tmp_path.glob("c/*/*.npy"))
    assert cache.clear() == 0
