"""The machine-readable "altered by ghostrt" label written into every output image.

Three carriers, so the label survives the common tools: an XMP packet (IPTC DigitalSourceType, the field
platforms read to flag synthetic media), EXIF ImageDescription/Software, and for PNG a plain tEXt chunk
`ghostrt:altered` holding the label as JSON. The label says what was done and with which weights; it never
names the source identity or any input file.
"""

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, PngImagePlugin

from ghostrt.version import __version__

PNG_KEY = "ghostrt:altered"
NS_GHOSTRT = "urn:ghostrt:provenance:1.0"
NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
# IPTC: "a mix or composite of trained algorithmic media with some other media" -- a face swap exactly.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131


def make_label(faces_swapped: int, standin_weights: bool, operation: str = "face swap") -> dict:
    """The label's content; `altered` is False only when no face was changed (the output is the input)."""
    altered = faces_swapped > 0
    text = (f"Altered by ghostrt {__version__}: synthetic {operation} of {faces_swapped} face(s)" if altered
            else f"Processed by ghostrt {__version__}: no face found, pixels unchanged")
    if standin_weights:
        text += "; made with STAND-IN (untrained) weights, not a real face swap"
    return {
        "tool": "ghostrt",
        "version": __version__,
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "altered": altered,
        "operation": operation,
        "faces_swapped": int(faces_swapped),
        "standin_weights": bool(standin_weights),
        "digital_source_type": DIGITAL_SOURCE_TYPE if altered else "",
        "description": text,
    }


def xmp_packet(label: dict) -> bytes:
    attrs = {
        "xmp:CreatorTool": f"{label['tool']} {label['version']}",
        "xmp:ModifyDate": label["date"],
        "ghostrt:Tool": label["tool"],
        "ghostrt:Version": label["version"],
        "ghostrt:Date": label["date"],
        "ghostrt:Altered": str(label["altered"]),
        "ghostrt:Operation": label["operation"],
        "ghostrt:FacesSwapped": str(label["faces_swapped"]),
        "ghostrt:StandinWeights": str(label["standin_weights"]),
    }
    if label["digital_source_type"]:
        attrs["Iptc4xmpExt:DigitalSourceType"] = label["digital_source_type"]
    attr_text = "\n    ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    packet = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="{NS_RDF}">
  <rdf:Description rdf:about=""
    xmlns:xmp="{NS_XMP}"
    xmlns:dc="{NS_DC}"
    xmlns:Iptc4xmpExt="{NS_IPTC_EXT}"
    xmlns:ghostrt="{NS_GHOSTRT}"
    {attr_text}>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(label['description'])}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""
    return packet.encode("utf-8")


def _exif(label: dict) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_IMAGE_DESCRIPTION] = label["description"]
    exif[EXIF_SOFTWARE] = f"{label['tool']} {label['version']}"
    return exif


def save_options(fmt: str, label: dict) -> dict:
    """Keyword arguments for PIL's Image.save that carry the label in format `fmt` (PNG, JPEG, WEBP)."""
    xmp = xmp_packet(label)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(PNG_KEY, json.dumps(label, sort_keys=True))
        info.add_text("Software", f"{label['tool']} {label['version']}")
        info.add_text("Description", label["description"])
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        return {"pnginfo": info}
    if fmt in ("JPEG", "WEBP"):
        return {"xmp": xmp, "exif": _exif(label).tobytes()}
    raise ValueError(f"no provenance label for format {fmt}")


def _label_from_xmp(xmp) -> dict | None:
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return None
    try:
        root = ET.fromstring(text[start:end + len("</x:xmpmeta>")])
    except ET.ParseError:
        return None
    for desc in root.iter(f"{{{NS_RDF}}}Description"):
        get = lambda name: desc.get(f"{{{NS_GHOSTRT}}}{name}")  # noqa: E731
        if get("Tool") is None:
            continue
        li = desc.find(f"{{{NS_DC}}}description/{{{NS_RDF}}}Alt/{{{NS_RDF}}}li")
        return {
            "tool": get("Tool"),
            "version": get("Version"),
            "date": get("Date"),
            "altered": get("Altered") == "True",
            "operation": get("Operation"),
            "faces_swapped": int(get("FacesSwapped") or 0),
            "standin_weights": get("StandinWeights") == "True",
            "digital_source_type": desc.get(f"{{{NS_IPTC_EXT}}}DigitalSourceType") or "",
            "description": li.text if li is not None else "",
        }
    return None


def read_label(path) -> dict | None:
    """The ghostrt label of an image file, or None when it carries none."""
    with Image.open(Path(path)) as image:
        text = getattr(image, "text", None) or {}
        if PNG_KEY in text:
            try:
                return json.loads(text[PNG_KEY])
            except json.JSONDecodeError:
                pass
        xmp = image.info.get("xmp") or text.get("XML:com.adobe.xmp")
        return _label_from_xmp(xmp) if xmp else None
