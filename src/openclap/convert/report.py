"""What a conversion did with every tensor of the source checkpoint."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConversionReport:
    """Every source tensor is either ``mapped`` to an openclap key or ``dropped`` with a reason.

    ``filled`` lists openclap keys the source has no tensor for and that were given a fixed value
    (with the reason, e.g. a classification head transformers' ClapModel lacks); ``checked`` lists
    derived source buffers whose values were compared with openclap's recomputation before dropping;
    ``notes`` holds anything else worth knowing (front-end checks, clapcap parts ignored, ...).
    """

    source: str
    format: str
    preset: str
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (source key, openclap key)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source key, reason)
    filled: list[tuple[str, str]] = field(default_factory=list)  # (openclap key, reason)
    checked: list[str] = field(default_factory=list)  # derived buffers verified equal to ours
    notes: list[str] = field(default_factory=list)
    # derived buffers that differ from openclap's; a non-empty list makes the conversion fail
    buffer_problems: list[str] = field(default_factory=list)

    def map(self, src: str, dst: str) -> None:
        """Record that source tensor ``src`` became openclap tensor ``dst``."""
        self.mapped.append((src, dst))

    def drop(self, src: str, reason: str) -> None:
        """Record that source tensor ``src`` is not used, and why."""
        self.dropped.append((src, reason))

    def fill(self, dst: str, reason: str) -> None:
        """Record that openclap tensor ``dst`` was given a fixed value, and why."""
        self.filled.append((dst, reason))

    @property
    def source_keys(self) -> set[str]:
        """All source keys the report accounts for."""
        return {s for s, _ in self.mapped} | {s for s, _ in self.dropped}

    def summary(self) -> str:
        """A few lines: counts, and each distinct drop/fill reason with how many tensors it covers."""
        lines = [
            (
                f"{self.source} ({self.format} -> openclap {self.preset!r}): {len(self.source_keys)} source "
                f"tensors, {len(self.mapped)} mapped, {len(self.dropped)} dropped, {len(self.filled)} filled"
            )
        ]
        for reason, n in Counter(r for _, r in self.dropped).most_common():
            lines.append(f"  dropped {n}: {reason}")
        for reason, n in Counter(r for _, r in self.filled).most_common():
            lines.append(f"  filled {n}: {reason}")
        if self.checked:
            lines.append(f"  {len(self.checked)} derived buffers checked equal to openclap's before dropping")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (written next to a converted model as ``conversion_report.json``)."""
        return {
            "source": self.source,
            "format": self.format,
            "preset": self.preset,
            "mapped": [list(p) for p in self.mapped],
            "dropped": [list(p) for p in self.dropped],
            "filled": [list(p) for p in self.filled],
            "checked": list(self.checked),
            "notes": list(self.notes),
        }
