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
- ``expiresAt`` of a new API key: must be in the future, else 422 by contract
  (a clock-bound rule no schema states). A well-formed timestamp is moved a
  day ahead; a malformed one is kept, so its rejection is still tested.

And one piece of housekeeping: the contract caps a user at 100 personas (the
101st is 422) and 25 active API keys (the 26th is 422), which a run's creates
would reach; so the oldest personas and keys the run created are deleted
(revoked) as it goes, keeping the user under the caps (the integration tests
cover the caps themselves).
"""

import collections
import datetime
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
    if isinstance(body, dict) and case.operation.path == "/v1/api-keys":
        expires = body.get("expiresAt")
        if isinstance(expires, str) and is_timestamp(expires):
            tomorrow = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
            body["expiresAt"] = tomorrow.isoformat().replace("+00:00", "Z")
    query = case.query
    if query and isinstance(query.get("cursor"), str):
        del query["cursor"]


def is_timestamp(s):
    try:
        datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


# What this run created, oldest first: (URL, Authorization header), per collection path.
CREATED = {"/v1/personas": collections.deque(), "/v1/api-keys": collections.deque()}
KEEP = {"/v1/personas": 50, "/v1/api-keys": 10}


@schemathesis.hook
def after_call(ctx, case, response):
    created = CREATED.get(case.operation.path)
    if response.status_code != 201 or response.request.method != "POST" or created is None:
        return
    location = (response.headers.get("location") or [None])[0]
    auth = response.request.headers.get("Authorization")
    if location and auth:
        created.append((urllib.parse.urljoin(response.request.url, location), auth))
    while len(created) > KEEP[case.operation.path]:
        url, auth = created.popleft()
        requests.delete(url, headers={"Authorization": auth}, timeout=30)
