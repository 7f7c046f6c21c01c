"""`ghostrt verify`: does a file carry ghostrt's provenance, and is it intact? Reads the three carriers
independently (C2PA manifest, ghostrt label, invisible watermark), so a file stripped of metadata is still
recognised by its pixels, and a file ghostrt did not make reports nothing found."""

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from ghostrt.errors import file_error
from ghostrt.runtime.io import c2pa_manifest, watermark

VIDEO_FRAMES_CHECKED = 8         # frames decoded from the start of a video for the watermark
VIDEO_FRAME_STRIDE = 3


@dataclass
class VerifyReport:
    path: Path
    kind: str                                # "image" or "video"
    c2pa: dict = field(default_factory=dict)
    label: dict | None = None
    watermark: dict = field(default_factory=dict)

    @property
    def c2pa_ghostrt(self) -> bool:
        return bool(self.c2pa.get("present")) and self.c2pa.get("ghostrt") is not None

    @property
    def tampered(self) -> bool:
        return self.c2pa.get("state") == "tampered"

    @property
    def intact(self) -> bool:
        """ghostrt provenance found and nothing says it was broken: a valid ghostrt manifest, or (with no
        manifest left, e.g. after a re-encode) the watermark."""
        if self.tampered:
            return False
        return (self.c2pa_ghostrt and self.c2pa["state"] != "tampered") or bool(self.watermark.get("found"))

    @property
    def found(self) -> bool:
        return self.c2pa_ghostrt or self.label is not None or bool(self.watermark.get("found"))

    @property
    def standin(self) -> bool:
        return bool((self.c2pa.get("ghostrt") or {}).get("standin_weights")
                    or (self.label or {}).get("standin_weights"))

    def lines(self) -> list[str]:
        c = self.c2pa
        out = [f"{self.path}  ({self.kind})"]
        if not c.get("present"):
            out.append("  C2PA       none" + (f" ({c['error']})" if c.get("error") else ""))
        else:
            state = {"trusted": "valid, signer trusted (the local ghostrt test CA)",
                     "valid-untrusted": "valid, signer untrusted (not on any trust list known here)",
                     "valid": "valid", "tampered": "TAMPERED (the file changed after signing)"}[c["state"]]
            who = "ghostrt manifest" if c.get("ghostrt") else "manifest from another tool"
            where = f", sidecar {Path(c['sidecar']).name}" if c.get("sidecar") else ""
            out.append(f"  C2PA       {state}; {who}{where}")
            if c.get("codes"):
                out.append(f"             codes: {', '.join(c['codes'])}")
            acts = [a.get("action", "?") + (f" ({a['digitalSourceType'].rsplit('/', 1)[-1]})"
                                            if a.get("digitalSourceType") else "") for a in c.get("actions", [])]
            if acts:
                out.append(f"             actions: {', '.join(acts)}")
            g = c.get("ghostrt") or {}
            if g:
                out.append(f"             ghostrt {g.get('version')} backend={g.get('backend', '?')} "
                           f"precision={g.get('precision', '?')} stand-in={g.get('standin_weights', '?')}")
        if self.label is None:
            out.append("  label      none")
        else:
            out.append(f"  label      {self.label.get('description', '')}")
        w = self.watermark
        if w.get("found"):
            frames = f", {w['frames_marked']}/{w['frames']} frames alone" if "frames" in w else ""
            out.append(f"  watermark  found (ghostrt format {w['format_id']}, confidence {w['confidence']:.2f}"
                       f"{frames})")
        else:
            out.append(f"  watermark  none" + (f" ({w['error']})" if w.get("error") else ""))
        if self.standin:
            out.append("  NOTE       made with STAND-IN (untrained) weights: not a real face swap")
        verdict = ("ghostrt provenance intact" if self.intact else
                   "ghostrt provenance found but TAMPERED" if self.found else "no ghostrt provenance found")
        out.append(f"  verdict    {verdict}")
        return out


def _kind(path: Path) -> tuple[str, str | None]:
    """('image', PIL format) or ('video', None) from the content; a one-line GhostError when it is neither."""
    if not path.exists():
        raise file_error(path, "file does not exist")
    if path.is_dir():
        raise file_error(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise file_error(path, "file is empty")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:         # the header only: pixels are decoded later
            return "image", im.format
    except UnidentifiedImageError:
        return "video", None                 # video_io.probe says precisely what is wrong when it is not one
    except Exception as err:                 # noqa: BLE001 - a broken header is bad input
        raise file_error(path, f"truncated or corrupt image ({str(err).splitlines()[0][:120]})") from None


def _image_report(path: Path, fmt: str | None) -> VerifyReport:
    from ghostrt.errors import GhostError
    from ghostrt.runtime.io import image_io, provenance_label
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(fmt or "")
    report = VerifyReport(path, "image", c2pa_manifest.read(path, mime))
    try:
        rgb, _, _ = image_io.read_image(path)
    except GhostError as err:
        # pixels that no longer decode (a flipped byte breaks PNG's CRC): a signed file is reported as the
        # tampered file it is; anything else is bad input
        if not report.c2pa.get("present"):
            raise
        report.watermark = {"found": False, "error": str(err).split(": ", 1)[-1]}
        if report.c2pa["state"] != "tampered":
            report.c2pa = dict(report.c2pa, state="tampered", codes=report.c2pa["codes"] + ["pixels.undecodable"])
        return report
    try:
        report.label = provenance_label.read_label(path)
    except Exception:                        # noqa: BLE001 - a label we cannot parse is no label
        report.label = None
    report.watermark = watermark.decode(rgb)
    return report


def _video_report(path: Path) -> VerifyReport:
    from ghostrt.runtime.io import video_io, video_writer
    info = video_io.probe(path)
    fmt = info.path.suffix.lower()
    mime = c2pa_manifest.EMBED_MIME.get(fmt) or c2pa_manifest.SIDECAR_MIME.get(fmt)
    report = VerifyReport(path, "video", c2pa_manifest.read(path, mime))
    try:
        report.label = video_writer.read_video_label(path)
    except Exception:                        # noqa: BLE001
        report.label = None
    frames = video_io.read_frames(info)
    try:
        picked = itertools.islice(itertools.islice(frames, 0, None, VIDEO_FRAME_STRIDE), VIDEO_FRAMES_CHECKED)
        report.watermark = watermark.decode_frames(f.rgb for f in picked)
    finally:
        frames.close()
    return report


def verify(path) -> VerifyReport:
    """The provenance report of one file; a GhostError (one line) when it is no readable image or video."""
    path = Path(path)
    kind, fmt = _kind(path)
    return _image_report(path, fmt) if kind == "image" else _video_report(path)
