"""Histogram of the organism's SAE-latent explanation scores against the random-explanation baseline,
as a PNG drawn here (no plotting dependency), plus the text summary.

    python scripts/explanation_histogram.py [--dataset data/datasets/organism] [--out autoencoders/organism/explanation_scores.png]

Blue bars (left of each pair): the offline explanations' simulation scores; orange (right): the same
latents scored with a random other latent's explanation. x from -0.2 to 1.0 in bins of 0.05; tick
labels every 0.2; the number at the top left is the y axis' maximum (latents per bin).
"""

from __future__ import annotations

import argparse
import struct
import zlib

import numpy as np

DIGITS = {  # 3x5 bitmap font
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
}


def write_png(path: str, pixels: np.ndarray) -> None:
    """``pixels``: uint8 [height, width, 3]."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def text(img: np.ndarray, x: int, y: int, s: str, scale: int = 2) -> None:
    for k, ch in enumerate(s):
        bits = DIGITS.get(ch)
        if bits is None:
            continue
        for i, b in enumerate(bits):
            if b == "1":
                r, c = divmod(i, 3)
                y0, x0 = y + r * scale, x + (k * 4 + c) * scale
                img[y0:y0 + scale, x0:x0 + scale] = 0


def histogram_png(path: str, scores: list[float], baseline: list[float], lo: float = -0.2, hi: float = 1.0,
                  bins: int = 24) -> None:
    width, height, margin = 720, 360, 40
    img = np.full((height, width, 3), 255, np.uint8)
    a, _ = np.histogram(np.clip(scores, lo, hi - 1e-9), bins=bins, range=(lo, hi))
    b, _ = np.histogram(np.clip(baseline, lo, hi - 1e-9), bins=bins, range=(lo, hi))
    top = max(int(a.max()), int(b.max()), 1)
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    bin_w = plot_w / bins
    for i in range(bins):
        for counts, color, half in ((a, (60, 110, 200), 0), (b, (240, 150, 60), 1)):
            bar = int(round(plot_h * counts[i] / top))
            x0 = int(margin + (i + half / 2) * bin_w) + 1
            x1 = int(margin + (i + (half + 1) / 2) * bin_w)
            img[height - margin - bar:height - margin, x0:x1] = color
    img[height - margin, margin:width - margin] = 0
    img[margin:height - margin, margin] = 0
    for t in np.arange(lo, hi + 1e-9, 0.2):
        x = int(margin + (t - lo) / (hi - lo) * plot_w)
        img[height - margin:height - margin + 5, x] = 0
        text(img, x - 8, height - margin + 9, f"{t:.1f}")
    text(img, 4, margin - 4, str(top))
    write_png(path, img)


def main() -> None:
    from mechscope.datasets.explanations import ExplanationStore
    from mechscope.datasets.explanations.summary import ranked, summarize, text_histogram
    from mechscope.datasets.stores import open_store
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="data/datasets/organism")
    p.add_argument("--out", default="autoencoders/organism/explanation_scores.png")
    args = p.parse_args()
    entries = [(k, e) for k, e in ExplanationStore(open_store(args.dataset)).iter_ours() if e.explainer == "offline"]
    latents = [(k, e) for k, e in entries if k.kind == "sae_latent" and e.score is not None]
    scores = [e.score for _, e in latents]
    baseline = [e.baselines["random"] for _, e in latents if e.baselines.get("random") is not None]
    histogram_png(args.out, scores, baseline)
    for kind, s in summarize(entries).items():
        print(kind, {k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()})
    print("SAE latents, offline explanations:\n" + text_histogram(scores))
    print("SAE latents, random other latent's explanation:\n" + text_histogram(baseline))
    best, worst = ranked(latents)
    for title, rows in (("best", best), ("worst", worst)):
        print(f"{title} 10:")
        for score, key, t in rows:
            print(f"  {score:+.3f}  {key}  {t[:120]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
