"""The input contract between training and serving: image size, colour and resampling filter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from PIL import Image

RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Formats the decoder will open; anything else is refused before any pixel is decoded.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP")

# Transparent pixels are composited onto this colour so that RGBA and RGB inputs agree.
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)

# Well under Pillow's own bomb limit (about 89 million pixels).
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: raw 0-255 RGB pixels of this size, resized with this filter.

    The image is resized to exactly (height, width), ignoring aspect ratio, as Keras's
    `image_dataset_from_directory` does by default. A JPEG is first DCT-downscaled while it
    is decoded (Pillow's draft mode, much faster on large photos) to no less than
    `jpeg_draft_gap` times the target size; 0 decodes at full size.
    """

    height: int = 150
    width: int = 150
    channels: int = 3
    resample: str = "bilinear"
    jpeg_draft_gap: int = 1

    def __post_init__(self) -> None:
        whole = (self.height, self.width, self.channels, self.jpeg_draft_gap)
        if any(type(n) is not int for n in whole):  # not 8.0, not True: they are counts
            raise TypeError(f"input sizes must be whole numbers, got {whole}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"input size must be positive, got {self.height}x{self.width}")
        if self.channels != 3:
            raise ValueError(f"only RGB (3 channels) is supported, got {self.channels}")
        if self.resample not in RESAMPLE_FILTERS:
            raise ValueError(
                f"unknown resample filter {self.resample!r}; one of {sorted(RESAMPLE_FILTERS)}"
            )
        if self.jpeg_draft_gap < 0:
            raise ValueError(f"jpeg_draft_gap must be >= 0, got {self.jpeg_draft_gap}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        return {**asdict(self), "dtype": "uint8", "color": "RGB", "value_range": [0, 255]}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        """From metadata's `input` object; versions published before JPEG draft decoding
        existed (no `jpeg_draft_gap`) decoded at full size."""
        known = {f.name for f in fields(cls)}
        return cls(**{"jpeg_draft_gap": 0, **{k: v for k, v in data.items() if k in known}})


DEFAULT_SPEC = InputSpec()
