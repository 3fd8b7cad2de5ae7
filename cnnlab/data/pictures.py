"""One picture, prepared the one way that training folders, predict and serve all prepare it: decoded (a JPEG at the
smallest of its 1/1, 1/2, 1/4 and 1/8 scales that still covers the size the model sees, a big PNG or other picture
box-averaged to about twice that size), turned upright by its EXIF orientation, transparent parts laid on white
paper, 16-bit depth scaled to 8 bits, converted to grayscale or RGB, and resized to the model's size (or first
centre-cropped to its aspect ratio)."""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from cnnlab.core.errors import CnnlabError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A phone's 50-megapixel photo is a picture; a PNG claiming more than this is a decompression bomb.
MAX_PIXELS = 64_000_000
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the picture a quarter, swapping width and height
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _opened(blob: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():  # PIL warns, then raises, on huge images: make both one clean error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(blob))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CnnlabError(f"{name}: too many pixels (a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise CnnlabError(f"{name}: cannot decode image (not a readable PNG, JPEG, BMP, GIF, WebP or TIFF)") from None
    except Exception as e:  # PIL raises many types for broken files
        raise CnnlabError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None
    if img.width * img.height > MAX_PIXELS:
        raise CnnlabError(f"{name}: {img.width}x{img.height} pixels is too large")
    return img


def header(blob: bytes, name: str) -> tuple:
    """(width, height, grayscale) of a picture as it will stand upright, from its first bytes only."""
    img = _opened(blob, name)
    w, h = (img.height, img.width) if _turned(img) else img.size
    gray = img.mode in GRAYSCALE_MODES or (img.mode == "P" and _palette_is_gray(img))
    return w, h, gray


def _turned(img: Image.Image) -> bool:
    """Whether the EXIF orientation turns the picture a quarter (width and height swap)."""
    if img.format == "PNG" and "exif" not in img.info:
        return False  # PIL looks for a PNG's eXIf chunk by decoding every pixel (6 ms for a 64 KiB header)
    try:
        return img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
    except Exception:  # a damaged EXIF block: the picture is taken as it is stored
        return False


def _palette_is_gray(img: Image.Image) -> bool:
    rgb = np.frombuffer(img.palette.tobytes(), np.uint8) if img.palette else np.zeros(0, np.uint8)
    if img.palette is None or img.palette.mode != "RGB" or len(rgb) % 3:
        return False
    rgb = rgb.reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def decode(blob: bytes, name: str, size: tuple | None = None, grayscale: bool = False) -> Image.Image:
    """The picture decoded and upright (the first frame of an animation). With `size` (width, height) a JPEG
    decodes straight at the smallest DCT scale whose result still covers it: a 12-megapixel photo bound for
    64x64 decodes at 1/8 in about a tenth of the time and memory."""
    img = _opened(blob, name)
    try:
        if size and img.format == "JPEG":
            w, h = size
            img.draft("L" if grayscale and img.mode in ("L", "RGB") else None, (h, w) if _turned(img) else (w, h))
        img.load()
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # a damaged EXIF block: keep the picture as stored
            pass
        return _reduced(img, size) if size else img
    except CnnlabError:
        raise
    except Exception as e:  # truncated or corrupt data shows only when the pixels are decoded
        raise CnnlabError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None


# Box-averaging modes: a palette's indices, 1-bit pixels, 16-bit and CMYK values do not average to their colours.
REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "I", "F"}


def _reduced(img: Image.Image, size: tuple) -> Image.Image:
    """A big PNG, TIFF, BMP or WebP box-averaged by the largest whole factor that keeps it at least twice the
    target on both sides, as a JPEG's DCT scaling does while decoding: Lanczos then shrinks at most 2x. For a
    2-4 megapixel RGBA PNG bound for 64x64, laying it on white and resizing took 76 ms at full size."""
    factor = min(img.width // (2 * size[0]), img.height // (2 * size[1]))
    if factor < 2 or img.format == "JPEG" or img.mode not in REDUCIBLE_MODES or "transparency" in img.info:
        return img
    return img.reduce(factor)  # RGBA and LA are averaged premultiplied: the same as laying on white first


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """L (channels 1) or RGB (3): 16- and 32-bit depths scaled to 8 bits (not clipped), transparency laid on
    white, CMYK and palettes converted."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or (a.size and a.max() > 255) else 255.0
        if img.mode == "F" and a.size and a.max() <= 1.0:
            peak = 1.0
        img = Image.fromarray(np.clip(np.rint(a * (255.0 / peak)), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        ground = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparent parts read as white paper
        img = Image.alpha_composite(ground, img.convert("RGBA"))
    return img.convert("L" if channels == 1 else "RGB")


def centre_crop(img: Image.Image, size: tuple) -> Image.Image:
    """The largest centred window with the aspect ratio of `size` (width, height): Keras' crop_to_aspect_ratio."""
    w, h = img.size
    tw, th = size
    if w * th > h * tw:  # wider than the target: crop the sides
        cw, ch = max(1, round(h * tw / th)), h
    else:
        cw, ch = w, max(1, round(w * th / tw))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def fit(img: Image.Image, size: tuple, crop: bool = False) -> Image.Image:
    """Resized to `size` (width, height), centre-cropped to its aspect ratio first when `crop`."""
    if crop and img.size != tuple(size):
        img = centre_crop(img, size)
    return resize(img, size)


def as_array(img: Image.Image, channels: int) -> np.ndarray:
    """uint8 C x H x W."""
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def prepare(blob: bytes, name: str, size: tuple | None, channels: int, crop: bool = False) -> np.ndarray:
    """A picture file's bytes as uint8 C x H x W at `size` (width, height), or at its own size if None."""
    img = decode(blob, name, size, grayscale=channels == 1)
    try:
        img = to_mode(img, channels)
        return as_array(fit(img, size, crop) if size else img, channels)
    except Exception as e:
        raise CnnlabError(f"{name}: cannot convert image ({type(e).__name__}: {e})") from None


def resize(img: Image.Image, size: tuple) -> Image.Image:
    """The one resize of training folders and of predict. Enlarging uses bilinear. Shrinking an enlargement
    (re-enlarging its values at the small grid's pixel centres, nearest, bilinear, bicubic or Lanczos, lands
    within ENLARGED_RMS of it) takes those centre values: such a picture has no detail to alias, and an
    antialiasing filter would only blur it. Any other picture is shrunk with Lanczos, the antialiasing filter.
    On 1,000 CIFAR-10 test images enlarged to 256x256 (bicubic, JPEG q90), the centres land 0.73 grey levels
    from the originals and Lanczos 2.74, and cifar-fast kept its answer on 997 against 970."""
    size = tuple(size)
    if img.size == size:
        return img
    if img.size[0] <= size[0] and img.size[1] <= size[1]:
        return img.resize(size, Image.BILINEAR)
    if img.mode in ("L", "RGB") and img.size[0] * img.size[1] <= ENLARGEMENT_CHECK_PIXELS:
        centres = _centre_samples(img, size)
        if _is_enlargement_of(img, centres):
            return centres
    return img.resize(size, Image.LANCZOS)


# Re-enlarged centres of 200 CIFAR-10 test images enlarged to 256x256 (nearest, bilinear, bicubic or Lanczos) and
# saved as JPEG q90 land at most 2.6 grey levels RMS from them; a photograph shrunk to 40-1024 pixels, 14-36.
ENLARGED_RMS = 6.0
# The check re-enlarges at full size, up to four ways (it stops at the first that fits, bicubic at 256x256 in
# 0.8 ms): a photo takes all four, 46 ms at 1024x1024 (Lanczos alone, 5 ms), and seconds at many megapixels,
# where it is no enlargement of a thumbnail.
ENLARGEMENT_CHECK_PIXELS = 1024 * 1024


def _centre_samples(img: Image.Image, size: tuple) -> Image.Image:
    """The picture's values at the small grid's pixel centres (bilinear between its own pixels, no filter)."""
    a = np.asarray(img, dtype=np.float32)
    (y0, y1, wy), (x0, x1, wx) = _between(img.height, size[1]), _between(img.width, size[0])
    wy = wy.reshape(-1, 1, *([1] * (a.ndim - 2)))
    rows = a[y0] * (1 - wy) + a[y1] * wy
    wx = wx.reshape(1, -1, *([1] * (a.ndim - 2)))
    out = rows[:, x0] * (1 - wx) + rows[:, x1] * wx
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _between(n_in: int, n_out: int) -> tuple:
    """The two source pixels around each output pixel's centre, and the second one's weight."""
    at = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    first = np.minimum(np.floor(at).astype(np.int64), n_in - 1)
    return first, np.minimum(first + 1, n_in - 1), (at - first).astype(np.float32)


def _is_enlargement_of(img: Image.Image, small: Image.Image) -> bool:
    """Whether one of small's common enlargements lands within ENLARGED_RMS grey levels RMS of the picture."""
    big = np.asarray(img, dtype=np.float32)
    def rms(how):
        return np.sqrt(np.mean((np.asarray(small.resize(img.size, how), dtype=np.float32) - big) ** 2))
    return any(rms(how) <= ENLARGED_RMS for how in (Image.BICUBIC, Image.LANCZOS, Image.BILINEAR, Image.NEAREST))
