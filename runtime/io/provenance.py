"""What an output carries besides its pixels (C2PA signer, invisible watermark, visible label), decided once
before any work so a bad key fails first; image_io, video_writer and the webcam loop apply it."""

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ghostrt.runtime.io import c2pa_manifest, visible_mark, watermark


@dataclass
class Provenance:
    signer: c2pa_manifest.Signer | None
    target: Path | None = None          # the target file: the manifest's parentOf ingredient (hash only)
    backend: str | None = None
    precision: str | None = None
    watermark: bool = True
    visible_mark: bool = False          # on files; live output has it unless --no-visible-mark
    extra: dict = field(default_factory=dict)

    def info(self, label: dict | None) -> dict:
        """The manifest fields: the label's (never the source identity) plus backend/precision and marks."""
        info = dict(label or {})
        for key in ("backend", "precision"):
            if getattr(self, key) is not None:
                info[key] = getattr(self, key)
        info["watermark"] = f"ghostrt-dct-qim-v{watermark.FORMAT_ID}" if self.watermark else "none"
        info["visible_mark"] = bool(self.visible_mark)
        info.update(self.extra)
        return info

    def mark_frame(self, rgb: np.ndarray, altered: bool = True) -> np.ndarray:
        """The pixels of a file output: visible label (when asked) then the invisible watermark."""
        if not altered:
            return rgb
        if self.visible_mark:
            rgb = visible_mark.apply(rgb)
        return watermark.embed(rgb) if self.watermark else rgb

    def for_generator(self, backend: str | None, precision: str | None) -> "Provenance":
        """A copy naming the generator's backend and precision in the manifest: they are known only once the
        nets are loaded, after the signer was checked."""
        return replace(self, backend=backend, precision=precision)

    def marks_only(self) -> "Provenance":
        """The part a segment worker applies to its frames: the marks, never the signer, so the private key
        stays with the driver that signs the stitched file."""
        return replace(self, signer=None)

    def sign(self, path, label: dict | None, final_name=None, log=print) -> Path | None:
        if self.signer is None:
            return None
        return c2pa_manifest.sign_file(path, self.signer, self.info(label), target=self.target,
                                       final_name=final_name, log=log)


def add_provenance_options(parser: argparse.ArgumentParser) -> None:
    """The provenance flags for `swap image|video|webcam`."""
    g = parser.add_argument_group("provenance (README: Provenance)")
    g.add_argument("--sign-cert", default=None, metavar="PEM",
                   help=f"C2PA signing certificate chain, leaf first (or ${c2pa_manifest.CERT_ENV}); "
                        "default: a local test CA created on first use")
    g.add_argument("--sign-key", default=None, metavar="PEM",
                   help=f"private key for --sign-cert (or ${c2pa_manifest.KEY_ENV})")
    g.add_argument("--visible-mark", dest="visible_mark", action="store_true", default=None,
                   help=f"add the '{visible_mark.TEXT}' corner label to image and video files too")
    g.add_argument("--no-visible-mark", dest="visible_mark", action="store_false",
                   help="no corner label on webcam / virtual-camera output (it is on by default there)")


def for_output(output=None, target=None, backend=None, precision=None, sign_cert=None, sign_key=None,
               visible=None, live: bool = False, log=print) -> Provenance:
    """Resolve the signer now (before any net runs) and check `output` can carry a manifest. Live output is
    not signed (no file); it carries the visible mark unless `visible` is False."""
    if output is not None:
        c2pa_manifest.sign_mode(output)
    signer = None if live else c2pa_manifest.resolve_signer(sign_cert, sign_key, log=log)
    if live and visible is False:
        log(visible_mark.NO_MARK_NOTE)
    return Provenance(signer, Path(target) if target is not None else None, backend, precision,
                      visible_mark=(live if visible is None else bool(visible)))


def from_args(args, output=None, target=None, backend=None, precision=None, live: bool = False,
              log=print) -> Provenance:
    """for_output from the flags add_provenance_options added."""
    return for_output(output, target, backend, precision, getattr(args, "sign_cert", None),
                      getattr(args, "sign_key", None), getattr(args, "visible_mark", None), live, log)
