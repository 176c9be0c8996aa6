"""schemathesis hooks for scripts/fuzz-api.sh: the generated requests behave
like a client in the two places where a well-formed value is still bound to
state the service keeps, which no schema can describe.

- ``Idempotency-Key``: a client sends a fresh key per logical request. The
  generator reuses short keys ("0") across different bodies, which the contract
  answers 422 ``idempotency_mismatch``; a valid key is therefore replaced with a
  fresh one (an invalid one is kept, so its rejection is still tested).
- ``cursor``: only the service can make one (it is signed and bound to the
  filters); any other string is 400 ``invalid_cursor`` by contract. Generated
  cursors are dropped; the integration tests cover forged and foreign cursors.
- ``input.customPersonaId`` of a new analysis: must name one of the caller's
  personas, else 422 ``unknown_persona`` by contract. Generated ids are
  dropped; the integration tests cover known and unknown ones.

And one piece of housekeeping: the contract caps a user at 100 personas (the
101st is 422), which a run's creates would reach; so the oldest personas the
run created are deleted as it goes, keeping the user under the cap (the
integration tests cover the cap itself).
"""

import collections
import re
import urllib.parse
import uuid

import requests
import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers
    if headers:
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and VALID_KEY.match(key):
            headers["Idempotency-Key"] = str(uuid.uuid4())
    body = case.body
    if isinstance(body, dict) and case.operation.path == "/v1/analyses":
        persona_input = body.get("input")
        if isinstance(persona_input, dict) and isinstance(persona_input.get("customPersonaId"), str):
            del persona_input["customPersonaId"]
    query = case.query
    if query and isinstance(query.get("cursor"), str):
        del query["cursor"]


# Personas this run created, oldest first: (URL, Authorization header).
CREATED_PERSONAS = collections.deque()
KEEP_PERSONAS = 50


@schemathesis.hook
def after_call(ctx, case, response):
    if (
        response.status_code != 201
        or response.request.method != "POST"
        or case.operation.path != "/v1/personas"
    ):
        return
    location = (response.headers.get("location") or [None])[0]
    auth = response.request.headers.get("Authorization")
    if location and auth:
        CREATED_PERSONAS.append((urllib.parse.urljoin(response.request.url, location), auth))
    while len(CREATED_PERSONAS) > KEEP_PERSONAS:
        url, auth = CREATED_PERSONAS.popleft()
        requests.delete(url, headers={"Authorization": auth}, timeout=30)
