"""Signed C2PA (Content Credentials) manifests on ghostrt's outputs, so any C2PA reader can tell they were
altered by a trained model, and a changed byte shows. Signing, the local test signer, and reading back.

The manifest says what was done (c2pa.opened on the target, c2pa.edited with the IPTC digital source type
compositeWithTrainedAlgorithmicMedia), by which ghostrt, backend and precision, with which weights (stand-in
or not), and names the target only as a parentOf ingredient (title and format; its sha256 in our own
assertion). Nothing about the source person.
"""

import datetime as dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ghostrt.version import __version__
from ghostrt.errors import GhostError, file_error

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
GHOSTRT_ASSERTION = "org.ghostrt.provenance"
CONFIG_ENV, CERT_ENV, KEY_ENV = "GHOSTRT_CONFIG_DIR", "GHOSTRT_SIGN_CERT", "GHOSTRT_SIGN_KEY"
LOCAL_CA_NAME = "ghostrt local test CA"
EMBED_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo"}
# C2PA has no embedding for Matroska: the manifest goes beside the file as <output>.c2pa
SIDECAR_MIME = {".mkv": "video/x-matroska", ".webm": "video/webm"}
_said: set[str] = set()


def config_dir() -> Path:
    """$GHOSTRT_CONFIG_DIR, else $XDG_CONFIG_HOME/ghostrt, else ~/.config/ghostrt."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ghostrt"


def _say_once(key: str, line: str, log) -> None:
    if key not in _said:
        _said.add(key)
        log(line)


@dataclass
class Signer:
    """Certificate chain (leaf first) and private key, PEM; `anchor_pem` is the local root when ours."""

    chain_pem: bytes
    key_pem: bytes
    source: str
    anchor_pem: bytes | None = None

    @property
    def local(self) -> bool:
        return self.anchor_pem is not None


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _create_local_ca(folder: Path) -> None:
    """A root CA (EC P-256, CA:true) issuing an ES256 leaf: c2pa refuses a self-signed signing certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ghostrt (local, not on any trust list)")])

    def usage(sign: bool):
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    base = lambda: (x509.CertificateBuilder().serial_number(x509.random_serial_number())  # noqa: E731
                    .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650)))
    ca = (base().subject_name(name(LOCAL_CA_NAME)).issuer_name(name(LOCAL_CA_NAME)).public_key(ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (base().subject_name(name("ghostrt local signer")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(folder / "signer.key", leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    _write_private(folder / "ca.pem", pem(ca), 0o644)
    _write_private(folder / "signer.pem", pem(leaf) + pem(ca), 0o644)    # written last: its presence = complete


def local_signer(create: bool = True, log=print) -> Signer | None:
    """The local test signer under config_dir()/c2pa, created on first use (said once)."""
    folder = config_dir() / "c2pa"
    if not (folder / "signer.pem").is_file():
        if not create:
            return None
        try:
            _create_local_ca(folder)
        except OSError as err:
            raise GhostError(f"{folder}: cannot create the local C2PA signer ({err}); "
                             f"give --sign-cert/--sign-key or set {CONFIG_ENV}") from None
        log(f"ghostrt: created a local C2PA test signer under {folder}/ (its CA is on no trust list: readers will "
            "call the signature valid but untrusted; give --sign-cert/--sign-key for a real one)")
    return Signer((folder / "signer.pem").read_bytes(), (folder / "signer.key").read_bytes(),
                  f"local test CA ({folder})", (folder / "ca.pem").read_bytes())


def _read_pem(path, what: str) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, f"{what} does not exist") from None
    except OSError as err:
        raise file_error(path, f"cannot read the {what} ({err.strerror})") from None
    if b"-----BEGIN" not in data:
        raise file_error(path, f"{what} is not a PEM file")
    return data


def resolve_signer(cert=None, key=None, log=print) -> Signer:
    """--sign-cert/--sign-key, else $GHOSTRT_SIGN_CERT/$GHOSTRT_SIGN_KEY, else the local test signer. Checked
    now (a test signature on a tiny PNG), so a bad key or a certificate c2pa refuses fails before any work."""
    cert = cert or os.environ.get(CERT_ENV) or None
    key = key or os.environ.get(KEY_ENV) or None
    if bool(cert) != bool(key):
        raise GhostError("--sign-cert and --sign-key go together (or set both "
                         f"{CERT_ENV} and {KEY_ENV})")
    signer = (Signer(_read_pem(cert, "signing certificate"), _read_pem(key, "signing key"), str(cert))
              if cert else local_signer(log=log))
    _check_signer(signer, cert or signer.source)
    return signer


def _tiny_png() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    return buf.getvalue()


def _check_signer(signer: Signer, where) -> None:
    import io

    try:
        _sign_stream(signer, _manifest("check.png", {}, None), "image/png", io.BytesIO(_tiny_png()), io.BytesIO())
    except GhostError:
        raise
    except Exception as err:      # c2pa raises its own error types for a refused certificate or key
        raise GhostError(f"{where}: c2pa cannot sign with this certificate and key "
                         f"({str(err).splitlines()[0][:160]})") from None


def sign_mode(path) -> str:
    """'embed' or 'sidecar' for an output name; a GhostError (before any work) when neither is possible."""
    suffix = Path(path).suffix.lower()
    if suffix in EMBED_MIME:
        return "embed"
    if suffix in SIDECAR_MIME:
        return "sidecar"
    raise file_error(path, f"cannot carry a C2PA manifest ({suffix or 'no extension'}); use "
                           f"{', '.join(list(EMBED_MIME) + list(SIDECAR_MIME))}")


def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".c2pa")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(title: str, info: dict, target: Path | None, altered: bool = True) -> dict:
    """The manifest definition. `info`: label fields plus backend/precision; no source identity ever."""
    params = {k: info[k] for k in ("backend", "precision", "operation", "faces_swapped", "standin_weights")
              if k in info}
    actions = []
    if target is not None:
        actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": ["target"]}})
    else:
        actions.append({"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": {"name": "ghostrt", "version": __version__}})
    if altered:
        actions.append({"action": "c2pa.edited", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": {"name": "ghostrt", "version": __version__}, "parameters": params})
    assertion = {"tool": "ghostrt", "version": __version__, "altered": altered, **params}
    if target is not None:
        assertion["target_sha256"] = sha256_file(target)     # the parent is named by its hash, never its pixels
    for key in ("watermark", "visible_mark", "description"):
        if key in info:
            assertion[key] = info[key]
    return {"claim_generator_info": [{"name": "ghostrt", "version": __version__}], "title": title,
            "format": None, "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                                           {"label": GHOSTRT_ASSERTION, "data": assertion}]}


def _context(anchor_pem: bytes | None = None):
    import c2pa
    config = {"builder": {"thumbnail": {"enabled": False}}}      # ~3 KB manifest instead of 35-69 KB
    if anchor_pem:
        config["trust"] = {"user_anchors": anchor_pem.decode()}
    return c2pa.Context.from_dict(config)


def _sign_stream(signer: Signer, manifest: dict, mime: str, src, dst, target: Path | None = None,
                 no_embed: bool = False) -> bytes:
    import c2pa
    manifest = {k: v for k, v in manifest.items() if v is not None}
    builder = c2pa.Builder(manifest, _context())
    try:
        if target is not None:
            ingredient = {"title": target.name, "relationship": "parentOf", "instance_id": "target",
                          "label": "target"}
            suffix = target.suffix.lower()
            with open(target, "rb") as fh:
                builder.add_ingredient(ingredient, EMBED_MIME.get(suffix) or SIDECAR_MIME.get(suffix)
                                       or "application/octet-stream", fh)
        if no_embed:
            builder.set_no_embed()
        c2pa_signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, signer.chain_pem,
                                                                 signer.key_pem, None))
        return builder.sign(c2pa_signer, mime, src, dst)
    finally:
        builder.close()


def sign_file(path, signer: Signer, info: dict, target=None, final_name=None, log=print) -> Path:
    """Sign the finished file `path` in place (through a temp file and a rename, so no half-signed file is
    ever seen). `final_name`: the name the file will have (its extension picks the format; its name is the
    manifest title). Returns where the manifest is: `path` itself or the sidecar beside `final_name`."""
    path = Path(path)
    final = Path(final_name or path)
    mode = sign_mode(final)
    suffix = final.suffix.lower()
    target = Path(target) if target is not None else None
    manifest = _manifest(final.name, info, target, altered=bool(info.get("altered", True)))
    try:
        if mode == "embed":
            tmp = path.with_name(f".{path.name}.c2pa-{os.getpid()}{path.suffix}")
            try:
                with open(path, "rb") as src, open(tmp, "w+b") as dst:
                    _sign_stream(signer, manifest, EMBED_MIME[suffix], src, dst, target)
                os.chmod(tmp, os.stat(path).st_mode & 0o777)
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            return final
        import io
        with open(path, "rb") as src:
            data = _sign_stream(signer, manifest, SIDECAR_MIME[suffix], src, io.BytesIO(), target, no_embed=True)
        from ghostrt.atomic import atomic_path
        side = sidecar_path(final)
        with atomic_path(side) as tmp:
            tmp.write_bytes(data)
        _say_once("sidecar", f"ghostrt: {final.suffix} cannot embed C2PA: the signed manifest is {side.name} "
                             "beside the file (keep them together)", log)
        return side
    except GhostError:
        raise
    except Exception as err:
        raise file_error(final, f"C2PA signing failed ({str(err).splitlines()[0][:160]})") from None


# ---------------------------------------------------------------------------------------------- reading

def _codes(items) -> list[str]:
    return sorted({i.get("code", "?") for i in items or []})


def read(path, mime: str | None = None, trust_local: bool = True) -> dict:
    """What C2PA says about `path` (embedded, else a sidecar beside it). Keys: present, state (none / valid /
    trusted / tampered / untrusted-invalid), codes (failures), ghostrt (our assertion or None), actions,
    signer, sidecar. Never raises on a file without a manifest."""
    import c2pa
    path = Path(path)
    mime = mime or EMBED_MIME.get(path.suffix.lower()) or SIDECAR_MIME.get(path.suffix.lower())
    anchor = None
    if trust_local:
        local = local_signer(create=False)
        anchor = local.anchor_pem if local else None
    side = sidecar_path(path)
    result = {"present": False, "state": "none", "codes": [], "ghostrt": None, "actions": [],
              "signer": None, "sidecar": None, "error": None}
    if mime is None:
        result["error"] = f"no C2PA reader for {path.suffix or 'this file'}"
        return result
    try:
        with open(path, "rb") as fh:
            if side.is_file():
                reader = c2pa.Reader(mime, fh, manifest_data=side.read_bytes(), context=_context(anchor))
                result["sidecar"] = str(side)
            else:
                reader = c2pa.Reader(mime, fh, context=_context(anchor))
            try:
                store = json.loads(reader.json())
                state = str(reader.get_validation_state() or "")
            finally:
                reader.close()
    except Exception as err:       # c2pa's "no manifest" (ManifestNotFound / JumbfNotFound) and kin
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "NotFound" not in text and "not found" not in text.lower():
            result["error"] = text[:200]
        return result
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    vr = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = _codes(vr.get("failure")) or _codes(store.get("validation_status"))
    result.update(present=True, codes=failures, signer=(active.get("signature_info") or {}).get("issuer"))
    for a in active.get("assertions", []):
        if a.get("label", "").startswith("c2pa.actions"):
            result["actions"] += a.get("data", {}).get("actions", [])
        elif a.get("label") == GHOSTRT_ASSERTION:
            result["ghostrt"] = a.get("data")
    real_failures = [c for c in failures if c != "signingCredential.untrusted"]
    if state.lower() == "trusted":
        result["state"] = "trusted"
    elif real_failures:
        result["state"] = "tampered"
    else:
        result["state"] = "valid-untrusted" if "signingCredential.untrusted" in failures else "valid"
    return result
