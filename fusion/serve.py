"""A local web app and JSON API around a model bundle: ``python -m fusion.serve [BUNDLE]``.

Why FastAPI and a plain page (not Gradio)
-----------------------------------------
* **Nothing outside the machine is needed.**  The page is one server-rendered HTML form with
  inline CSS and no script at all: it works in any browser, offline, behind a hospital
  firewall.  Gradio's front end is a large JavaScript bundle whose versions change often and
  which has fetched fonts and assets from the internet.
* **Tests.**  FastAPI apps are tested in-process with ``TestClient`` (status codes, JSON
  bodies, headers), and the same app runs under uvicorn for the load test and the browser test.
* **One place for the rules.**  Upload limits, content sniffing, safe decoding and error
  statuses are written once here and shared by the page and the API; FastAPI writes the
  OpenAPI description (``/docs``, ``/openapi.json``) from the same code.

Routes
------
``GET /``                 the form: one upload per modality (any may be left empty) and the
                          clinical fields generated from the bundle's schema (levels as
                          selects, numeric ranges and units).
``POST /predict``         the form's answer as a page: probabilities, predicted class, each
                          source's contribution, Grad-CAM overlays, cross-validated performance.
``GET /api/model``        the model: classes, modalities, fields, CV performance (JSON).
``POST /api/predict``     one patient, ``multipart/form-data`` (files ``image_<modality>``,
                          clinical fields by variable name) -> JSON.
``POST /api/predict/batch``  several patients as JSON (images base64-encoded) -> JSON.
``GET /health``           liveness.

Safety
------
* Request bodies are capped (``413``) before they are read (``Content-Length``, and a byte count
  for streamed bodies); each image is capped in bytes (``413``) and in pixels (``413``, checked
  from the header before decoding; PIL's decompression-bomb guard stays on).
* The image type is decided from the file's first bytes (PNG, JPEG, BMP, TIFF), never from its
  name or declared content type (``415`` otherwise); a file of the right type that does not
  decode (truncated, corrupt) is ``422``; a malformed multipart body or JSON is ``400``.
* Unknown fields, unknown levels (with did-you-mean), non-numbers and out-of-range values are
  ``422`` with one line per problem, from the same parser the cohort tables use
  (:func:`analysis.cohort.parse_variables`).
* Uploaded bytes are written only to a per-request temporary directory (files named by
  modality, not by the uploaded name), removed when the request ends, whatever happens.  (While
  parsing a form, Starlette keeps a part over 1 MiB in an anonymous temporary file, unlinked
  from the start and closed with the request.)
* The app logs nothing about a patient: no file names, ids or values; the only log line per
  request is the route, the status and the time taken.

Every answer says that this is a research tool, not a diagnostic device.
"""
import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import html
import io
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from typing import Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from analysis.errors import CohortError, ConfigError
from fusion.gradcam import auto_gradcam_layer  # noqa: F401 (part of this module's API before)

__all__ = ["DEFAULT_BUNDLE", "Limits", "create_app", "serve_in_background", "build_parser", "main",
           "sniff_image_type"]

DEFAULT_BUNDLE = Path("reports/demo/cv/model_bundle.pt")
log = logging.getLogger("fusion.serve")

#: First bytes of the accepted image types.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"BM", "bmp"),
          (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF"}
#: Grad-CAM overlays: smallest side shown (px) and opacity of the heat map (as fusion.gradcam.overlay).
OVERLAY_PX = 256
OVERLAY_ALPHA = 0.45
RESEARCH_ONLY = "A research tool, not a diagnostic device: do not use it to make decisions about a patient."

EPILOG = """\
examples:
  python -m fusion.demo                                   # writes reports/demo/cv/model_bundle.pt
  python -m fusion.serve                                  # serves it on http://127.0.0.1:8000
  python -m fusion.serve runs/cv/model_bundle.pt --port 8080
  curl -F image_2d=@P1.png -F age=54 -F sex=male http://127.0.0.1:8000/api/predict
"""


class Limits:
    """Upload limits of the app (bytes per image, pixels per image, patients per batch)."""

    def __init__(self, max_image_bytes: int = 10 * 2**20, max_pixels: int = 25_000_000, max_batch: int = 32):
        self.max_image_bytes = int(max_image_bytes)
        self.max_pixels = int(max_pixels)
        self.max_batch = int(max_batch)


class RequestError(Exception):
    """A bad request: HTTP ``status`` and one line per problem."""

    def __init__(self, status: int, problems):
        self.status = status
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def sniff_image_type(data: bytes) -> Optional[str]:
    """``'png'``, ``'jpeg'``, ``'bmp'`` or ``'tiff'`` from the first bytes of ``data``, else None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def _check_image(data: bytes, modality: str, limits: Limits, model):
    """Sniff, size-check and decode one upload; the decoded uint8 tensor ``(C, H, W)``."""
    from PIL import Image

    from fusion.images import decode_image

    if len(data) > limits.max_image_bytes:
        raise RequestError(413, f"image_{modality}: file larger than {limits.max_image_bytes // 2**20} MiB")
    kind = sniff_image_type(data)
    if kind is None:
        raise RequestError(415, f"image_{modality}: not a PNG, JPEG, BMP or TIFF image (judged from its content)")
    try:
        with Image.open(io.BytesIO(data)) as img:     # header only: nothing decoded yet
            w, h = img.size
            fmt = img.format
    except Image.DecompressionBombError:
        raise RequestError(413, f"image_{modality}: image has too many pixels to decode safely") from None
    except Exception:  # noqa: BLE001 - any unreadable header is one line
        raise RequestError(422, f"image_{modality}: the {kind.upper()} file cannot be read (corrupt header)") from None
    if fmt != _PIL_FORMATS[kind]:
        raise RequestError(415, f"image_{modality}: content is not a valid {kind.upper()} image")
    if w * h > limits.max_pixels:
        raise RequestError(413, f"image_{modality}: {w} x {h} pixels is more than the {limits.max_pixels:,} allowed")
    try:
        return decode_image(data, size=model.size, channels=int(model.channels[modality]), resize=model.resize,
                            modality=modality)
    except CohortError as err:
        raise RequestError(422, f"image_{modality}: {err}") from None


# ----------------------------------------------------------------------------- prediction core
class Predictor:
    """Runs the bundle on one request's patients, one request at a time (Grad-CAM uses hooks)."""

    def __init__(self, model, limits: Limits, tmp_root=None, gradcam_layer=None):
        self.model = model
        self.gradcam_layer = gradcam_layer
        if gradcam_layer is not None:
            from fusion.gradcam import _resolve_layer

            for m in model.modalities:
                try:
                    _resolve_layer(model._cnn(m), gradcam_layer)
                except ValueError as exc:
                    raise ConfigError(f"--gradcam-layer: {exc}") from None
        # without --gradcam-layer: per modality the deepest block whose map is at least 3 x 3 at the
        # bundle's image size (the demo's 64 px ResNet18 has a 2 x 2 last block: a blank map)
        self.layers = {m: gradcam_layer or auto_gradcam_layer(model._cnn(m), int(model.size),
                                                               int(model.channels[m]))
                       for m in model.modalities}
        self.limits = limits
        self.tmp_root = None if tmp_root is None else str(tmp_root)
        self.schema = model.schema
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    def warm_up(self) -> None:
        """One prediction of a blank patient, so that the first real request does not pay for the imports."""
        from PIL import Image

        buf = io.BytesIO()
        Image.new("L", (self.model.size, self.model.size), 128).save(buf, "PNG")
        blank = {m: buf.getvalue() for m in self.model.modalities}
        self.predict([{"patient_id": None, "clinical": {}, "images": blank}], gradcam=True)

    # ------------------------------------------------------------ validation
    def validate(self, patients: list) -> list:
        """Check every patient's clinical values and images; ``RequestError`` lists all problems."""
        from analysis.cohort import parse_variables
        from analysis.errors import did_you_mean

        names = [v.name for v in self.schema.variables]
        problems, status, checked = [], 422, []
        for k, p in enumerate(patients):
            where = f"patient {k + 1}: " if len(patients) > 1 else ""
            clinical = {key: ("" if v is None else str(v)) for key, v in p["clinical"].items()}
            for key in clinical:
                if key not in names:
                    problems.append(f"{where}'{key}' is not a field of this model{did_you_mean(key, names)}")
            images = {}
            for m, data in p["images"].items():
                if m not in self.model.modalities:
                    problems.append(f"{where}image_{m}: this model has no modality '{m}' "
                                    f"(it has {', '.join(self.model.modalities)})")
                    continue
                try:
                    images[m] = (data, _check_image(data, m, self.limits, self.model))
                except RequestError as err:
                    problems.extend(where + q for q in err.problems)
                    status = err.status if status == 422 else status
            known = {key: v for key, v in clinical.items() if key in names and v.strip()}
            if not p["images"] and not known:
                problems.append(f"{where}no image and no clinical value: give at least one")
            if known:
                _, cells = parse_variables(pd.DataFrame([known], dtype=object), self.schema, "form")
                for e in cells:
                    msg = str(e).split(": ", 1)[1] if str(e).startswith("form: ") else str(e)
                    problems.append(where + msg.replace("row 2, ", ""))
            checked.append({"patient_id": p.get("patient_id") or f"patient_{k + 1}", "clinical": known,
                            "images": images})
        if problems:
            raise RequestError(status, problems)
        return checked

    # ------------------------------------------------------------ prediction
    async def run(self, patients: list, gradcam: bool) -> list:
        loop = asyncio.get_running_loop()
        return await asyncio.wrap_future(self._pool.submit(self.predict, patients, gradcam), loop=loop)

    def predict(self, patients: list, gradcam: bool) -> list:
        checked = self.validate(patients)
        schema = self.schema
        with tempfile.TemporaryDirectory(prefix="fusion-serve-", dir=self.tmp_root) as tmp:
            rows = []
            for k, p in enumerate(checked):
                row = {schema.id_column: f"request_{k + 1}", **p["clinical"]}
                for m, (data, _) in p["images"].items():
                    path = Path(tmp) / f"{k + 1}_{m}.{sniff_image_type(data)}"
                    path.write_bytes(data)
                    row[schema.image_columns[m]] = str(path)
                rows.append(row)
            preds, problems = self.model.predict_table(pd.DataFrame(rows, dtype=object), root=tmp, source="form")
        if len(problems) or len(preds) != len(checked):
            raise RequestError(422, [str(x) for x in problems["problem"]] or ["the model could not predict"])
        out = []
        for k, p in enumerate(checked):
            r = preds.iloc[k]
            pred = str(r["predicted"])
            item = {
                "patient_id": str(p["patient_id"]),
                "probabilities": {c: float(r[f"p_{c}"]) for c in self.model.classes},
                "predicted": pred,
                "contributions": {c.split("_", 1)[1]: float(r[c]) for c in preds.columns
                                  if c.startswith("contribution_")},
                "missing_modalities": [m for m in str(r["missing"]).split("; ") if m],
                "gradcam": {},
            }
            if gradcam:
                target = self.model.classes.index(pred)
                for m, (_, img) in p["images"].items():
                    item["gradcam"][m] = "data:image/png;base64," + base64.b64encode(
                        self.gradcam_png(m, img, target)).decode("ascii")
            out.append(item)
        return out

    def gradcam_png(self, modality: str, image, target: int) -> bytes:
        """PNG of the Grad-CAM overlay of the final ``modality`` CNN for class index ``target``.

        The map (:func:`fusion.gradcam.grad_cam`) is drawn as :func:`fusion.gradcam.overlay` draws
        it (jet colour map, 45 % opaque, bilinear) over the image as the network saw it, enlarged
        to at least :data:`OVERLAY_PX` pixels; composed with PIL rather than a matplotlib figure
        (about 100 times faster), the colour scale is shown by the page.
        """
        from fusion.gradcam import grad_cam, overlay_png
        from fusion.transforms import build_transform

        net = self.model._cnn(modality)
        x = build_transform("none", train=False, channels=int(self.model.channels[modality]))(image[None])
        cam = grad_cam(net, x, target_class=target, layer=self.layers[modality])[0].numpy()
        return overlay_png(image, cam, min_px=OVERLAY_PX, alpha=OVERLAY_ALPHA)

    # ------------------------------------------------------------ description
    def fields(self) -> list:
        out = []
        for v in self.schema.variables:
            out.append({"name": v.name, "label": v.label or v.name, "type": v.type,
                        "levels": None if v.levels is None else [str(x) for x in v.levels],
                        "min": v.min, "max": v.max, "unit": v.unit})
        return out

    def performance(self) -> list:
        perf = self.model.cv_performance
        keep = [c for c in ("metric", "estimate", "ci_low", "ci_high", "ci_level", "n_patients", "split")
                if c in perf.columns]
        return json.loads(perf[keep].to_json(orient="records")) if len(perf) else []


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em}
.warn{background:#fff4d6;border:1px solid #e0b84d;padding:.6em .9em;border-radius:4px}
.err{background:#fde2e2;border:1px solid #d66;padding:.6em .9em;border-radius:4px}
fieldset{border:1px solid #ccc;margin:1em 0;padding:.6em 1em}
label{display:inline-block;min-width:15em}.row{margin:.35em 0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.bar{display:inline-block;height:.8em;background:#4a7ebb;vertical-align:middle}
#predicted-class{font-size:1.3em;font-weight:bold}
.gradcam-figure{display:inline-block;margin:.4em;text-align:center}
img.gradcam{width:256px;border:1px solid #ccc}
.jet{display:inline-block;width:120px;height:.8em;vertical-align:middle;
background:linear-gradient(to right,#00007f,#0000ff,#007fff,#00ffff,#7fff7f,#ffff00,#ff7f00,#ff0000,#7f0000)}
button{font-size:1em;padding:.4em 1.2em}.unit{color:#666}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p class='warn' id='research-only'>{html.escape(RESEARCH_ONLY)}</p>"
            f"{body}</body></html>")


def _fmt(x, digits=3) -> str:
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return ""


def _performance_html(perf: list) -> str:
    if not perf:
        return "<p>No cross-validated performance is stored in this bundle.</p>"
    rows = "".join(f"<tr><td>{html.escape(str(r['metric']))}</td><td>{_fmt(r['estimate'])}</td>"
                   f"<td>{_fmt(r.get('ci_low'))} &ndash; {_fmt(r.get('ci_high'))}</td>"
                   f"<td>{html.escape(str(r.get('n_patients', '')))}</td></tr>" for r in perf)
    return ("<table id='cv-performance'><tr><th>metric</th><th>estimate</th><th>95% CI</th><th>patients</th></tr>"
            f"{rows}</table><p>Estimated by patient-grouped cross-validation of the same recipe "
            "(each patient predicted by a model that never saw it); CIs by patient-level bootstrap.</p>")


def _form_html(pred: Predictor) -> str:
    parts = ["<form method='post' action='/predict' enctype='multipart/form-data'>",
             "<fieldset><legend>Images (any may be left empty; PNG, JPEG, BMP or TIFF, "
             f"at most {pred.limits.max_image_bytes // 2**20} MiB each)</legend>"]
    for m in pred.model.modalities:
        parts.append(f"<div class='row'><label for='image_{m}'>{html.escape(m)} image</label>"
                     f"<input type='file' id='image_{m}' name='image_{m}' "
                     "accept='image/png,image/jpeg,image/bmp,image/tiff'></div>")
    parts.append("</fieldset><fieldset><legend>Clinical values (leave unknown ones empty)</legend>")
    for f in pred.fields():
        name = html.escape(f["name"])
        unit = f" <span class='unit'>({html.escape(f['unit'])})</span>" if f["unit"] else ""
        label = f"<label for='f_{name}'>{html.escape(str(f['label']))}{unit}</label>"
        if f["levels"] is not None:
            opts = "<option value=''>(unknown)</option>" + "".join(
                f"<option value='{html.escape(x)}'>{html.escape(x)}</option>" for x in f["levels"])
            parts.append(f"<div class='row'>{label}<select id='f_{name}' name='{name}'>{opts}</select></div>")
        else:
            rng = "".join(f" {k}='{f[k]:g}'" for k in ("min", "max") if f[k] is not None)
            hint = (f" <span class='unit'>{_fmt(f['min'], 4).rstrip('0').rstrip('.')}&ndash;"
                    f"{_fmt(f['max'], 4).rstrip('0').rstrip('.')}</span>"
                    if f["min"] is not None and f["max"] is not None else "")
            parts.append(f"<div class='row'>{label}<input type='number' step='any' id='f_{name}' "
                         f"name='{name}'{rng}>{hint}</div>")
    parts.append("</fieldset><button type='submit' id='submit'>Predict</button></form>")
    return "".join(parts)


def _result_html(pred: Predictor, item: dict) -> str:
    probs = "".join(f"<tr><td>{html.escape(c)}</td><td>{p:.3f}</td><td><span class='bar' "
                    f"style='width:{200 * p:.0f}px'></span></td></tr>" for c, p in item["probabilities"].items())
    contrib = "".join(f"<tr><td>{html.escape(s)}</td><td>{v:+.3f}</td></tr>" for s, v in item["contributions"].items())
    missing = ", ".join(item["missing_modalities"]) or "none"
    cams = "".join(f"<figure class='gradcam-figure'><img class='gradcam' id='gradcam-{html.escape(m)}' "
                   f"alt='Grad-CAM overlay, {html.escape(m)}' src='{src}'><figcaption>{html.escape(m)}</figcaption>"
                   "</figure>" for m, src in item["gradcam"].items())
    return (f"<h2>Prediction</h2><p>Predicted class: <span id='predicted-class'>{html.escape(item['predicted'])}"
            f"</span></p><table id='probabilities'><tr><th>class</th><th>probability</th><th></th></tr>{probs}</table>"
            f"<p>Modalities missing (predicted without them): {html.escape(missing)}</p>"
            "<h2>Contribution of each source</h2><p>Exact Shapley values of each source to the probability of the "
            "predicted class, relative to an average training patient (they add up to the difference).</p>"
            f"<table id='contributions'><tr><th>source</th><th>contribution</th></tr>{contrib}</table>"
            "<h2>Grad-CAM heat maps</h2><p>Where each modality's network found evidence for the predicted class "
            "(Selvaraju et al. 2017; each map scaled to its own maximum): <span class='jet'></span> "
            f"low &rarr; high.</p><div id='gradcams'>{cams or '<p>No image was uploaded.</p>'}</div>")


# ----------------------------------------------------------------------------- app

class PatientIn(BaseModel):
    """One patient of a batch request."""

    patient_id: Optional[str] = Field(None, description="echoed back; never logged")
    clinical: dict[str, Optional[Union[str, float, int]]] = Field(default_factory=dict,
                                                                  description="variable name -> value")
    images: dict[str, str] = Field(default_factory=dict, description="modality -> base64 image file")


class BatchIn(BaseModel):
    """Several patients (images base64-encoded)."""

    patients: list[PatientIn] = Field(..., min_length=1, description="at most Limits.max_batch (default 32)")
    gradcam: bool = False


class PredictionOut(BaseModel):
    """One patient's prediction."""

    patient_id: str
    probabilities: dict[str, float]
    predicted: str
    contributions: dict[str, float]
    missing_modalities: list[str]
    gradcam: dict[str, str] = Field(description="modality -> data:image/png;base64 overlay")


class AnswerOut(BaseModel):
    """Predictions with the model's estimated performance."""

    predictions: list[PredictionOut]
    model: str
    cv_performance: list[dict]
    research_use_only: str


class _Guard:
    """ASGI middleware: ``413`` for a body over its route's limit (declared or streamed); one log line.

    ``limits`` maps a path to its byte limit; other paths get ``default``.  The log line has the
    method, route, status and time only: nothing that identifies a patient.
    """

    def __init__(self, app, limits: dict, default: int = 65536):
        self.app, self.limits, self.default = app, dict(limits), int(default)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope.get("path", ""), self.default)
        t0, status = time.perf_counter(), [0]
        try:
            await self._guarded(scope, receive, send, limit, status)
        finally:
            log.info("%s %s -> %d in %.0f ms", scope.get("method"), scope.get("path"), status[0],
                     1000 * (time.perf_counter() - t0))

    async def _guarded(self, scope, receive, send, limit, status):
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            status[0] = 413
            return await _send_json(send, 413, {"detail": [f"request body larger than {limit} bytes"]})
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                status[0] = 413
                await _send_json(send, 413, {"detail": [f"request body larger than {limit} bytes"]})
        except Exception as exc:  # noqa: BLE001 - an unexpected error: its message may hold patient data
            log.error("%s %s failed: %s (message not logged)", scope.get("method"), scope.get("path"),
                      type(exc).__name__)
            if not started:
                status[0] = 500
                await _send_json(send, 500, {"detail": ["internal error of the app (the server log names its type)"]})


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict):
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _openapi_form(pred: Predictor) -> dict:
    props = {f"image_{m}": {"type": "string", "format": "binary",
                            "description": f"{m} image (PNG, JPEG, BMP or TIFF; optional)"}
             for m in pred.model.modalities}
    for f in pred.fields():
        desc = str(f["label"]) + (f" ({f['unit']})" if f["unit"] else "")
        if f["levels"] is not None:
            props[f["name"]] = {"type": "string", "enum": f["levels"], "description": desc}
        else:
            s = {"type": "number", "description": desc}
            if f["min"] is not None:
                s["minimum"] = f["min"]
            if f["max"] is not None:
                s["maximum"] = f["max"]
            props[f["name"]] = s
    props["gradcam"] = {"type": "boolean", "default": True, "description": "include Grad-CAM overlays"}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props}}}}}


def create_app(bundle, *, limits: Optional[Limits] = None, tmp_root=None, gradcam_layer=None, warm_up: bool = True):
    """The FastAPI app serving ``bundle`` (a path or a :class:`fusion.bundle.FusionModel`).

    Parameters
    ----------
    bundle : str, Path or FusionModel
    limits : Limits, optional
        Upload limits (default: 10 MiB and 25 megapixels per image, 32 patients per batch).
    tmp_root : str or Path, optional
        Where the per-request temporary directories are made (default: the system's).
    gradcam_layer : str, optional
        Layer of the CNNs explained by Grad-CAM (default: the backbone's last spatial block;
        ``'body.layer3'`` gives finer maps for ResNets trained on small images).
    warm_up : bool, default True
        Predict a blank patient once now (loads the networks and the libraries), so the first
        request is answered as fast as the others.
    """
    from fusion.bundle import FusionModel, load_bundle

    model = bundle if isinstance(bundle, FusionModel) else load_bundle(bundle)
    limits = limits or Limits()
    pred = Predictor(model, limits, tmp_root, gradcam_layer)
    if warm_up:
        pred.warm_up()
    n_mod = len(model.modalities)
    form_limit = n_mod * limits.max_image_bytes + 2**20            # the images and the clinical fields
    body_limits = {"/api/predict": form_limit, "/predict": form_limit,
                   "/api/predict/batch": limits.max_batch * (n_mod * limits.max_image_bytes * 4 // 3 + 65536)}

    app = FastAPI(title="lymphnode-toolkit prediction", version=str(model.meta.get("toolkit_version", "")),
                  description=f"{model.summary()}.\n\n{RESEARCH_ONLY}")
    app.state.predictor = pred

    def answer(items) -> dict:
        return {"predictions": items, "model": model.summary(), "cv_performance": pred.performance(),
                "research_use_only": RESEARCH_ONLY}

    @app.exception_handler(RequestError)
    async def _bad(request: Request, exc: RequestError):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.problems}, status_code=exc.status)
        items = "".join(f"<li>{html.escape(p)}</li>" for p in exc.problems)
        return HTMLResponse(_page("Cannot predict", f"<div class='err' id='errors'><ul>{items}</ul></div>"
                                  "<p><a href='/'>Back to the form</a></p>"), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse({"detail": ["malformed JSON body"]}, status_code=400)
        problems = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            problems.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": [str(exc.detail)]}, status_code=exc.status_code)

    async def read_form(request: Request) -> tuple:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise RequestError(415, "send the patient as multipart/form-data (files image_<modality>, clinical "
                                    "fields by name); several patients as JSON to /api/predict/batch")
        try:
            form = await request.form(max_files=n_mod + 1, max_fields=len(model.schema.variables) + 8)
        except StarletteHTTPException as exc:
            raise RequestError(400, f"malformed form data ({exc.detail})") from None
        try:
            images, clinical, gradcam = {}, {}, True
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    if not key.startswith("image_"):
                        raise RequestError(422, f"'{key}': a file was sent where a value is expected")
                    data = await value.read(limits.max_image_bytes + 1)
                    if not data:
                        continue          # an empty file input: the modality is missing
                    if key[6:] in images:
                        raise RequestError(422, f"{key}: sent twice")
                    images[key[6:]] = data
                elif key == "gradcam":
                    gradcam = str(value).strip().lower() not in ("0", "false", "no", "off")
                elif key.startswith("image_"):
                    if str(value).strip():
                        raise RequestError(422, f"{key}: expected an image file, got a text value")
                else:
                    if key in clinical:
                        raise RequestError(422, f"'{key}': sent twice")
                    clinical[key] = str(value)
        finally:
            await form.close()
        return {"patient_id": None, "clinical": clinical, "images": images}, gradcam

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        body = (f"<p>{html.escape(model.summary())}.</p>" + _form_html(pred)
                + "<h2>Cross-validated performance</h2>" + _performance_html(pred.performance())
                + "<p>JSON API for scripts: <a href='/docs'>/docs</a> (OpenAPI: <a href='/openapi.json'>"
                "/openapi.json</a>).</p>")
        return HTMLResponse(_page("Lymph node classification (research)", body))

    @app.post("/predict", response_class=HTMLResponse, include_in_schema=False)
    async def predict_page(request: Request):
        patient, _ = await read_form(request)
        (item,) = await pred.run([patient], gradcam=True)
        body = (_result_html(pred, item) + "<h2>Cross-validated performance of this model</h2>"
                + _performance_html(pred.performance()) + "<p><a href='/'>Predict another patient</a></p>")
        return HTMLResponse(_page("Lymph node classification (research)", body))

    @app.get("/health", include_in_schema=False)
    async def health():
        return {"status": "ok"}

    @app.get("/api/model", summary="The model: classes, modalities, input fields, cross-validated performance")
    async def model_info() -> dict:
        return {"summary": model.summary(), "classes": list(model.classes), "modalities": list(model.modalities),
                "fields": pred.fields(), "image_size": int(model.size), "cv_performance": pred.performance(),
                "limits": {"max_image_bytes": limits.max_image_bytes, "max_pixels": limits.max_pixels,
                           "max_batch": limits.max_batch},
                "research_use_only": RESEARCH_ONLY}

    @app.post("/api/predict", response_model=AnswerOut, openapi_extra=_openapi_form(pred),
              summary="Predict one patient (multipart form: image_<modality> files, clinical fields by name)",
              responses={413: {"description": "upload too large"}, 415: {"description": "not an accepted image type"},
                         422: {"description": "invalid field values or undecodable image"},
                         400: {"description": "malformed request"}})
    async def predict_api(request: Request):
        patient, gradcam = await read_form(request)
        return answer(await pred.run([patient], gradcam=gradcam))

    @app.post("/api/predict/batch", response_model=AnswerOut,
              summary="Predict several patients (JSON; images as base64 strings)")
    async def predict_batch(batch: BatchIn):
        if len(batch.patients) > limits.max_batch:
            raise RequestError(413, f"{len(batch.patients)} patients: at most {limits.max_batch} per request")
        patients = []
        for k, p in enumerate(batch.patients):
            images = {}
            for m, text in p.images.items():
                if len(text) > limits.max_image_bytes * 4 // 3 + 4:
                    raise RequestError(413, f"patient {k + 1}: image_{m}: file larger than "
                                            f"{limits.max_image_bytes // 2**20} MiB")
                try:
                    images[m] = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text,
                                                 validate=True)
                except ValueError:
                    raise RequestError(422, f"patient {k + 1}: image_{m}: not valid base64") from None
            patients.append({"patient_id": p.patient_id, "images": images,
                             "clinical": {key: ("" if v is None else str(v)) for key, v in p.clinical.items()}})
        return answer(await pred.run(patients, gradcam=batch.gradcam))

    app.add_middleware(_Guard, limits=body_limits)    # outermost: before anything reads the body
    return app


# ----------------------------------------------------------------------------- CLI
@contextlib.contextmanager
def serve_in_background(bundle, *, threads: int = 1, args=(), log=None, timeout: float = 180.0):
    """``python -m fusion.serve BUNDLE`` in a subprocess on 127.0.0.1 and a free port.

    Yields ``(url, process)`` once ``/health`` answers; the server is stopped on exit. ``args``
    are further command-line options (e.g. ``('--gradcam-layer', 'body.layer3')``); ``log``, a
    file for the server's output (default: discarded). Raises ``RuntimeError`` (with the end
    of the log) when the server exits or does not answer within ``timeout`` seconds. Used by
    the browser and load tests, ``bench/bench_serve.py`` and ``docs/app_screenshot.py``.
    """
    import os
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "fusion.serve", str(bundle), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), *args]
    out = open(log, "w") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log).read_text(errors="replace")[-2000:] if log is not None else ""
                raise RuntimeError(f"fusion.serve did not start{': ' + tail if tail else ''}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusion.serve",
                                description="Serve a model bundle as a local web app and JSON API.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", default=None,
                   help=f"model_bundle.pt (default: {DEFAULT_BUNDLE}, written by python -m fusion.demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: 1)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image file accepted (default: 10)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image accepted, in pixels")
    p.add_argument("--gradcam-layer", default=None,
                   help="CNN layer Grad-CAM explains (default: the deepest block whose map is at least 3 x 3 "
                        "at the bundle's image size, e.g. body.layer3 of a ResNet at 64 px)")
    return p


def main(argv=None) -> int:
    from analysis.errors import run_cli

    return run_cli(lambda: _run(build_parser().parse_args(argv)))


def _run(args) -> list:
    import uvicorn

    from fusion import runtime

    path = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    if not path.is_file():
        if args.bundle:
            raise ConfigError("bundle file not found", file=path)
        raise ConfigError(f"no model bundle at {DEFAULT_BUNDLE}: make one with `python -m fusion.demo` (or "
                          "`python -m fusion.train COHORT --final --out DIR`) and pass DIR/model_bundle.pt")
    runtime.set_threads(args.threads)
    app = create_app(path, limits=Limits(int(args.max_upload_mb * 2**20), args.max_pixels),
                     gradcam_layer=args.gradcam_layer)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"serving {path} on http://{args.host}:{args.port}  ({RESEARCH_ONLY})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return []


if __name__ == "__main__":
    raise SystemExit(main())
