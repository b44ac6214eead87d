"""The REST API (``/api/v1``): a thin adapter over :mod:`graftmatch.services`.

Each route authenticates the caller's API token (``Authorization: Bearer ...``), checks the
action it declares in :data:`ROUTES` (the one table of the API's permissions, read by the
tests) against :data:`graftmatch.access.roles.PERMISSIONS`, and calls one service. Every
request is audited through :mod:`graftmatch.services.audit` with the client address as its
source, never a typing or clinical value. Errors are RFC 9457 problem details.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from graftmatch import __version__
from graftmatch.access.roles import ACTIONS, AccessDenied, Identity, allowed
from graftmatch.database import Database, DatabaseError
from graftmatch.errors import GraftmatchError, TypingError
from graftmatch.pathway.patients import PatientError, PatientNotFound
from graftmatch.services import accounts, audit
from graftmatch.services import matching as matching_service
from graftmatch.services import patients as patient_service
from graftmatch.services import typings as typing_service
from graftmatch.services.patients import PatientSummary
from graftmatch.services.reference import open_reader
from graftmatch.typing.parser import TypingReader

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"

#: Route name -> the action of :data:`graftmatch.access.roles.ACTIONS` it needs (None: no
#: token needed). THE table of the API's permissions: every route is here, a test reads it.
ROUTES: dict[str, str | None] = {
    "health": None,
    "typings.validate": "hla.use",
    "typings.reduce": "hla.use",
    "match": "hla.use",
    "patients.list": "patients.read",
    "patients.get": "patients.read",
    "patients.create": "patients.write",
}
assert all(a is None or a in ACTIONS for a in ROUTES.values())


class Problem(Exception):
    """An RFC 9457 problem to answer with."""

    def __init__(self, status: int, slug: str, title: str, detail: str,
                 errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors, self.headers = errors, headers

    def response(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = {"type": f"urn:graftmatch:problem:{self.slug}",
                                "title": self.title, "status": self.status,
                                "detail": self.detail, "instance": request.url.path}
        if self.errors is not None:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM,
                            headers=self.headers)


def _problem_of(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, accounts.LoginRefused):
        return Problem(401, "unauthenticated", "Not authenticated", str(exc),
                       headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, AccessDenied):
        return Problem(403, "forbidden", "Forbidden", str(exc))
    if isinstance(exc, PatientNotFound):
        return Problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, PatientError):
        return Problem(422, "invalid-request", "Invalid request", str(exc),
                       [{"field": f, "reason": r} for f, r in exc.problems])
    if isinstance(exc, TypingError):
        return Problem(422, "invalid-typing", "Invalid HLA typing", str(exc),
                       [{"field": "typing", "reason": exc.reason, "token": exc.token,
                         "position": exc.position}])
    if isinstance(exc, DatabaseError):
        return Problem(503, "database", "Database unavailable", str(exc))
    return Problem(400, "refused", "Request refused", str(exc))


def _field(loc: Any) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


# --- request and response models ------------------------------------------------------------


class Health(BaseModel):
    status: str
    version: str


class TypingRequest(BaseModel):
    typing: str = Field(min_length=1, max_length=100_000, description="a GL String")


class ReduceRequest(TypingRequest):
    level: str = Field("lgx", description="G, P, lgx or serology")


class MatchRequest(BaseModel):
    patient: str = Field(min_length=1, max_length=100_000, description="GL String")
    donor: str = Field(min_length=1, max_length=100_000, description="GL String")
    loci: list[str] | None = Field(None, description="loci counted (default: the policy's)")
    level: str | None = Field(None, description="P or G (default: the policy's)")


class ValidationResult(BaseModel):
    valid: bool
    typing: str
    loci: list[str]
    release: str
    notices: list[dict[str, Any]]


class ReductionResult(BaseModel):
    typing: str
    level: str
    reduced: str
    release: str
    notices: list[dict[str, Any]]


# --- the app --------------------------------------------------------------------------------


def create_app(database_url: str | None = None, *,
               reader: Callable[[], TypingReader] | None = None) -> FastAPI:
    """The service on the database at ``database_url`` (default: GRAFTMATCH_DATABASE, else
    GRAFTMATCH_HOME's SQLite file); refuses an unmigrated one, naming the fix."""
    db = Database(database_url)
    lock = threading.Lock()
    cache: list[TypingReader] = []

    def the_reader() -> TypingReader:
        with lock:
            if not cache:
                cache.append((reader or open_reader)())
            return cache[0]

    app = FastAPI(title="graftmatch", version=__version__, openapi_url=f"{PREFIX}/openapi.json",
                  docs_url=f"{PREFIX}/docs", redoc_url=None)
    app.state.db = db

    @app.exception_handler(GraftmatchError)
    async def _graftmatch_error(request: Request, exc: GraftmatchError) -> JSONResponse:
        return _problem_of(exc).response(request)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "reason": e.get("msg", "invalid")}
                  for e in exc.errors()]
        return Problem(422, "invalid-request", "Invalid request",
                       "; ".join(f"{e['field']}: {e['reason']}" for e in errors),
                       errors).response(request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return Problem(exc.status_code, "http", str(exc.detail), str(exc.detail)
                       ).response(request)

    def caller(route: str) -> Callable[[Request], Identity]:
        action = ROUTES[route]
        assert action is not None

        def dependency(request: Request) -> Identity:
            source = request.client.host if request.client else "unknown"
            header = request.headers.get("authorization", "")
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                audit.record(db, Identity("anonymous", None, None, source), action, None,
                             outcome="refused", detail="no-token", role="unknown")
                raise Problem(401, "unauthenticated", "Not authenticated",
                              "an API token is needed: Authorization: Bearer TOKEN",
                              headers={"WWW-Authenticate": "Bearer"})
            who = accounts.authenticate_token(db, secret.strip(), source=source)
            if not allowed(who, action):
                audit.record(db, who, action, None, outcome="refused", detail=action)
                raise AccessDenied(who, action)
            return who

        return dependency

    #: route -> its dependency: the caller, authenticated and allowed the route's action.
    need = {route: Depends(caller(route)) for route, action in ROUTES.items() if action}

    @app.get(f"{PREFIX}/health", name="health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", version=__version__)

    @app.post(f"{PREFIX}/typings/validate", name="typings.validate",
              response_model=ValidationResult)
    def validate(body: TypingRequest, who: Identity = need["typings.validate"]) -> dict[str, Any]:
        with audit.audited(db, who, "hla.use", "typings.validate"):
            return typing_service.validate(body.typing, the_reader()).to_dict()

    @app.post(f"{PREFIX}/typings/reduce", name="typings.reduce",
              response_model=ReductionResult)
    def reduce(body: ReduceRequest, who: Identity = need["typings.reduce"]) -> dict[str, Any]:
        with audit.audited(db, who, "hla.use", "typings.reduce"):
            return typing_service.reduce(body.typing, body.level, the_reader()).to_dict()

    @app.post(f"{PREFIX}/match", name="match")
    def match(body: MatchRequest, who: Identity = need["match"]) -> dict[str, Any]:
        with audit.audited(db, who, "hla.use", "match"):
            return matching_service.grade_pair(body.patient, body.donor, body.loci,
                                               level=body.level, reader=the_reader()).to_dict()

    @app.get(f"{PREFIX}/patients", name="patients.list", response_model=list[PatientSummary])
    def list_patients(centre: str | None = None,
                      who: Identity = need["patients.list"]) -> list[PatientSummary]:
        return patient_service.list_patients(db, centre=centre, caller=who)

    @app.get(f"{PREFIX}/patients/{{patient_id}}", name="patients.get")
    def get_patient(patient_id: str, who: Identity = need["patients.get"]) -> JSONResponse:
        patient = patient_service.get_patient(db, patient_id, caller=who)
        return JSONResponse(patient.model_dump(mode="json"))

    @app.post(f"{PREFIX}/patients", name="patients.create", status_code=201)
    def create_patient(body: dict[str, Any], who: Identity = need["patients.create"]
                       ) -> JSONResponse:
        patient = patient_service.create_patient(db, body, the_reader(), caller=who)
        return JSONResponse(patient.model_dump(mode="json"), status_code=201)

    # Every API route must declare its permission in ROUTES, and every entry name a route
    # (the documentation pages FastAPI adds are not API routes).
    documentation = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url}
    named = {getattr(r, "name", None) for r in app.routes
             if getattr(r, "path", "").startswith(PREFIX)
             and getattr(r, "path", "") not in documentation}
    if named != set(ROUTES):
        raise RuntimeError(f"API routes without a permission entry in ROUTES: "
                           f"{sorted(map(str, named - set(ROUTES)))}; entries without a route: "
                           f"{sorted(set(ROUTES) - named)}")
    return app


def serve(database_url: str | None, host: str, port: int) -> None:
    """Run the service with uvicorn (the database must be migrated: graftmatch db upgrade)."""
    import uvicorn

    uvicorn.run(create_app(database_url), host=host, port=port, log_level="info")
