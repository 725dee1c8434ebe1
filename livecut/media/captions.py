"""Captions laid out for burning in: each cue's text drawn into one RGBA strip with Pillow.

Every strip has the output's width and the same height (room for MAX_LINES lines), so
the render's overlay input never changes size; a strip is transparent but for a dark
box behind each line. The layout follows the output's shape: the text size is a
fraction of the output's shorter side, lines are wrapped to fit 88% of its width, and
the strip sits above the bottom margin, which on a vertical frame is high enough to
clear the buttons and captions that short-video apps draw over the lowest fifth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from livecut.media.subtitles import Cue, plain_text

MAX_LINES = 3
TEXT_OF_SHORT_SIDE = 0.052  # text height as a fraction of the output's shorter side
LINE_WIDTH = 0.88  # of the output's width
BOTTOM_MARGIN = 0.07  # of the height, landscape and square
BOTTOM_MARGIN_VERTICAL = 0.2  # of the height: above short-video apps' own overlays
BOX_ALPHA = 170  # the box behind each line: dark enough for white text on any picture
MIN_TEXT_PX = 10


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptionLayout:
    """Where the strip goes in a width x height frame, and how its text is set."""

    width: int
    height: int
    text_px: int
    line_px: int
    pad_px: int
    strip_height: int
    strip_y: int  # top of the strip in the frame

    @staticmethod
    def for_frame(width: int, height: int) -> CaptionLayout:
        text_px = max(MIN_TEXT_PX, round(min(width, height) * TEXT_OF_SHORT_SIDE))
        line_px = round(text_px * 1.3)
        pad_px = max(2, round(text_px * 0.25))
        strip_height = _even(MAX_LINES * line_px + 2 * pad_px)
        margin = BOTTOM_MARGIN_VERTICAL if height > width else BOTTOM_MARGIN
        strip_y = _even(max(0, height - round(height * margin) - strip_height))
        return CaptionLayout(
            width=width,
            height=height,
            text_px=text_px,
            line_px=line_px,
            pad_px=pad_px,
            strip_height=min(strip_height, height),
            strip_y=strip_y,
        )


class CaptionPainter:
    """Draws cue text into strips for one layout (the font is loaded once)."""

    def __init__(self, layout: CaptionLayout) -> None:
        self.layout = layout
        self._font = ImageFont.load_default(size=layout.text_px)

    def blank(self) -> Image.Image:
        return Image.new("RGBA", (self.layout.width, self.layout.strip_height), (0, 0, 0, 0))

    def draw(self, text: str) -> Image.Image:
        """The strip showing `text` (a cue's payload, WebVTT markup allowed)."""
        layout = self.layout
        image = self.blank()
        lines = self.lines(plain_text(text))
        if not lines:
            return image
        draw = ImageDraw.Draw(image)
        y = layout.strip_height - layout.pad_px - len(lines) * layout.line_px
        for line in lines:
            width = draw.textlength(line, font=self._font)
            x = (layout.width - width) / 2
            draw.rectangle(
                (
                    x - layout.pad_px,
                    y,
                    x + width + layout.pad_px,
                    y + layout.line_px,
                ),
                fill=(0, 0, 0, BOX_ALPHA),
            )
            offset = (layout.line_px - layout.text_px) / 2
            draw.text((x, y + offset), line, font=self._font, fill=(255, 255, 255, 255))
            y += layout.line_px
        return image

    def lines(self, text: str) -> list[str]:
        """Words wrapped to the line width; at most MAX_LINES, the last cut with an ellipsis."""
        limit = self.layout.width * LINE_WIDTH
        lines: list[str] = []
        for paragraph in text.splitlines():
            current = ""
            for word in paragraph.split():
                candidate = f"{current} {word}" if current else word
                if current and self._font.getlength(candidate) > limit:
                    lines.append(current)
                    current = word
                else:
                    current = candidate
            if current:
                lines.append(current)
        lines = [self._fit(line, limit) for line in lines]
        if len(lines) > MAX_LINES:
            lines = [*lines[: MAX_LINES - 1], self._fit(lines[MAX_LINES - 1] + " …", limit, True)]
        return lines

    def _fit(self, line: str, limit: float, ellipsis: bool = False) -> str:
        """A line no wider than limit: a single word too long for it is cut."""
        if self._font.getlength(line) <= limit and not ellipsis:
            return line
        text = line.removesuffix(" …") if ellipsis else line
        mark = "…" if ellipsis or self._font.getlength(line) > limit else ""
        while text and self._font.getlength(text + mark) > limit:
            text = text[:-1]
        return text.rstrip() + mark


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptionSpan:
    """What the strip shows from start_s (in the output's time) until the next span."""

    start_s: float
    text: str  # "" for no caption


def caption_spans(cues: Sequence[Cue], *, zero_ms: float, end_s: float) -> list[CaptionSpan]:
    """The caption timeline of an output whose t=0 is wall time zero_ms: one span per
    change, starting with a blank at 0; overlapping cues show together, oldest first."""
    edges: set[float] = {0.0}
    for cue in cues:
        edges.add(max(0.0, (cue.start_ms - zero_ms) / 1000))
        edges.add(max(0.0, (cue.end_ms - zero_ms) / 1000))
    spans: list[CaptionSpan] = []
    for at in sorted(e for e in edges if e < end_s):
        showing = [
            c.text
            for c in sorted(cues, key=lambda c: c.start_ms)
            if (c.start_ms - zero_ms) / 1000 <= at < (c.end_ms - zero_ms) / 1000
        ]
        text = "\n".join(showing)
        if not spans or spans[-1].text != text:
            spans.append(CaptionSpan(start_s=at, text=text))
    return spans


def _even(value: int) -> int:
    return value - value % 2
