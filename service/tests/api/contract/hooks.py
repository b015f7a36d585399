"""Schemathesis hooks for the contract test (service/tests/api/contract.rs).

OpenAPI cannot say that one field must equal another, nor compare a time
with the clock, nor that a value must be one the server gave, and the API
has four such rules; every other rule is in the document itself:

- a project's `mesh_namespace` is `hub.<its slug>`;
- `PUT /api/fed/projects/{slug}` may repeat the slug in its body
  (`project_slug` or `slug`), and then it is the one in the path;
- a maintenance window (`PUT /api/fed/projects/{slug}/maintenance`) ends in
  the future, at most 30 days ahead: `until` a time, or `duration` a
  humantime span (`2h`);
- a list's `cursor` (`GET /api/fed/projects`, `GET /api/federation/spokes`)
  is opaque: one the list gave in its `Link` header, for the same `sort`.

`map_case` makes generated requests follow the first three. The stateful
phase then fills some fields from earlier responses, which can break them
again (or put both `project_slug` and `slug` in one body, which the document
itself refuses), and a generated cursor is never one the server gave, so
`filter_failure` drops a "schema-valid request rejected" whose
every problem is one of those, and only those. The run's summary counts what
it dropped.
"""

import datetime
import json

import schemathesis

# The server's words for the rules OpenAPI cannot carry (service/src/catalog.rs).
CROSS_FIELD_RULES = (
    "the namespace of",
    "must be the slug in the path",
    "must be left out when project_slug is given",
    # service/src/api/maintenance.rs
    "must be in the future",
    "must be an RFC 3339 time",
    "must be a positive duration",
    "must be at most 30 days",
    # service/src/api/listing.rs
    "is not a cursor this list gave",
    "belongs to another sort",
)


def _slug_of(body):
    for field in ("project_slug", "slug"):
        value = body.get(field)
        if isinstance(value, str):
            return value
    return None


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return case
    body = case.body
    if not isinstance(body, dict):
        return case
    if case.method.upper() == "PUT" and case.operation.path.endswith("/maintenance"):
        if isinstance(body.get("until"), str):
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
            body["until"] = until.isoformat()
        if isinstance(body.get("duration"), str):
            body["duration"] = "2h"
        return case
    if case.method.upper() == "PUT" and case.operation.path == "/api/fed/projects/{slug}":
        slug = (case.path_parameters or {}).get("slug")
        for field in ("project_slug", "slug"):
            if isinstance(body.get(field), str) and isinstance(slug, str):
                body[field] = slug
    else:
        slug = _slug_of(body)
    if isinstance(slug, str) and isinstance(body.get("mesh_namespace"), str):
        body["mesh_namespace"] = f"hub.{slug}"
    return case


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    try:
        errors = json.loads(response.content).get("errors") or []
    except (ValueError, AttributeError):
        return True
    only_cross_field = all(
        any(rule in str(e.get("message", "")) for rule in CROSS_FIELD_RULES) for e in errors
    )
    return not (errors and only_cross_field)
