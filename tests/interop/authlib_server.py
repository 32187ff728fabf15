"""Authlib (PyPI `authlib`) as an RFC 7523 §2.1 JWT bearer authorization server on loopback,
and the resource server that accepts its tokens, for tests/interop.rs.

The token endpoint is Authlib's own `AuthorizationServer` (Flask integration) with
`authlib.oauth2.rfc7523.JWTBearerGrant`: Authlib verifies the assertion's signature with the
issuer's public key (joserfc's recommended algorithms only: RS256, ES256, HS256), `iss` (the
client), `aud` (this server's token endpoint URL or its issuer identifier), `exp` (60 s leeway)
and `nbf`/`iat` when present, then `sub` (a user this client may act for). No client
authentication is needed or read: the assertion is the authentication. Authlib does not track
`jti`; this server adds that: an assertion without `jti`, or whose `jti` it has already accepted,
is `invalid_grant`.

Configuration comes as JSON in the environment variable AUTHLIB_CONFIG:
  {
    "ttl": 600,                           # seconds, every access token
    "issuers": {                          # the clients, by assertion `iss`
      "svc-client": {
        "key": "-----BEGIN PUBLIC KEY-----...",   # PEM (public or private; RSA or EC) or a JWK
        "subjects": ["user@example.com"],         # who it may get tokens for
        "scope": "api"                            # allowed scope (optional)
      }
    }
  }

Once listening on 127.0.0.1 (a free port) it prints ONE JSON line on stdout:
  {"issuer", "token_endpoint", "api"}
and exits when its stdin closes.

  POST /token            the token endpoint
  GET  /api/...          200 {"sub", "client_id", "scope", "path", "headers"} with a bearer token
                         it issued that has not expired; else 401 invalid_token
  GET  /__stats          {"token_requests", "tokens_issued", "errors" {code: count},
                          "descriptions" {error_description: count}, "duplicates" (assertions
                          refused for a reused jti), "jtis" (distinct jti accepted),
                          "client_authentication" (token requests that carried a Basic
                          header, client_secret or client_assertion: RFC 7523 §2.1 needs none),
                          "last_assertions" [{alg, kid, typ, iss, sub, aud, lifetime, nbf,
                          jti_length}], "api_accepted", "api_rejected", "api_tokens"}
  GET  /__last_assertion {"assertion": the last assertion received at /token, verbatim}: only in
                         this test fixture, so a test can POST a copy of it and watch it refused
"""

import base64
import json
import logging
import os
import sys
import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc7523 import JWTBearerGrant
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask import jsonify
from flask import request
from joserfc.jwk import import_key
from werkzeug.serving import make_server

# One line per request on stderr is noise in a test's output; errors still show.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

CONFIG = json.loads(os.environ.get("AUTHLIB_CONFIG", "{}"))
TTL = int(CONFIG.get("ttl", 600))


def public_key(value):
    """A joserfc key from a JWK dict or a PEM (public or private, RSA or EC)."""
    if isinstance(value, dict):
        return import_key(value)
    data = value.encode()
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(key, rsa.RSAPublicKey):
        return import_key(pem, "RSA")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return import_key(pem, "EC")
    raise ValueError(f"unsupported key type {type(key).__name__}")


class Client(ClientMixin):
    def __init__(self, client_id, entry):
        self.client_id = client_id
        self.key = public_key(entry["key"])
        self.subjects = set(entry.get("subjects", []))
        self.scope = entry.get("scope", "")

    def get_client_id(self):
        return self.client_id

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_grant_type(self, grant_type):
        return grant_type == JWTBearerGrant.GRANT_TYPE

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "none"


CLIENTS = {cid: Client(cid, entry) for cid, entry in CONFIG.get("issuers", {}).items()}

lock = threading.Lock()
stats = {
    "token_requests": 0,
    "tokens_issued": 0,
    "errors": {},
    "descriptions": {},
    "duplicates": 0,
    "jtis": 0,
    "client_authentication": 0,
    "last_assertions": [],
    "api_accepted": 0,
    "api_rejected": 0,
    "api_tokens": 0,
}
seen_jtis = set()
# access token -> {"sub", "client_id", "scope", "expires_at"}
tokens = {}
used_tokens = set()
last_assertion = {"assertion": None}


def bump(name, key):
    stats[name][key] = stats[name].get(key, 0) + 1


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def record_assertion(assertion):
    """The assertion as received (decoded, not verified: Authlib verifies it)."""
    last_assertion["assertion"] = assertion
    try:
        header_b64, payload_b64, _ = assertion.split(".")
        header, payload = b64json(header_b64), b64json(payload_b64)
    except ValueError:
        return
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return
    exp, iat, jti = payload.get("exp"), payload.get("iat"), payload.get("jti")
    stats["last_assertions"].append(
        {
            "alg": header.get("alg"),
            "kid": header.get("kid"),
            "typ": header.get("typ"),
            "iss": payload.get("iss"),
            "sub": payload.get("sub"),
            "aud": payload.get("aud"),
            "lifetime": exp - iat
            if isinstance(exp, (int, float)) and isinstance(iat, (int, float))
            else None,
            "nbf": "nbf" in payload,
            "jti_length": len(jti) if isinstance(jti, str) else None,
        }
    )
    del stats["last_assertions"][:-50]


class JWTBearer(JWTBearerGrant):
    def resolve_issuer_client(self, issuer):
        return CLIENTS.get(issuer)

    def resolve_client_public_key(self, client):
        return client.key

    def get_audiences(self):
        return [ISSUER + "/token", ISSUER]

    def authenticate_user(self, subject):
        client = self.request.client
        if client is not None and subject in client.subjects:
            return {"sub": subject}
        if any(subject in c.subjects for c in CLIENTS.values()):
            return {"sub": subject}
        return None

    def has_granted_permission(self, client, user):
        return user["sub"] in client.subjects

    def verify_claims(self, claims):
        # Authlib: iss, aud, exp (and nbf/iat when present). Then replay protection, which
        # Authlib leaves to the application. Runs after the signature was verified, so an
        # unauthenticated request cannot use up a jti.
        super().verify_claims(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidGrantError(description="Missing claim: 'jti'")
        with lock:
            if jti in seen_jtis:
                stats["duplicates"] += 1
                raise InvalidGrantError(description="The assertion's jti has already been used")
            seen_jtis.add(jti)
            stats["jtis"] = len(seen_jtis)


def save_token(token, req):
    user = req.user or {}
    with lock:
        tokens[token["access_token"]] = {
            "sub": user.get("sub"),
            "client_id": req.client.get_client_id(),
            "scope": token.get("scope", ""),
            "expires_at": time.time() + token["expires_in"],
        }


app = Flask(__name__)
app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {JWTBearerGrant.GRANT_TYPE: TTL}
server = AuthorizationServer(app, query_client=CLIENTS.get, save_token=save_token)
server.register_grant(JWTBearer)


@app.post("/token")
def token_endpoint():
    with lock:
        stats["token_requests"] += 1
        assertion = request.form.get("assertion")
        if assertion:
            record_assertion(assertion)
        # RFC 7523 §2.1 needs none; count requests that carried some anyway.
        if "Authorization" in request.headers or any(
            k in request.form for k in ("client_secret", "client_assertion")
        ):
            stats["client_authentication"] += 1
    response = server.create_token_response()
    with lock:
        if response.status_code == 200:
            stats["tokens_issued"] += 1
        else:
            try:
                body = json.loads(response.get_data())
            except ValueError:
                body = {}
            bump("errors", body.get("error", str(response.status_code)))
            bump("descriptions", body.get("error_description", ""))
    return response


@app.route("/api", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "DELETE"])
@app.route("/api/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
def api(rest):
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
    with lock:
        grant = tokens.get(token) if token else None
        if grant is None or time.time() >= grant["expires_at"]:
            stats["api_rejected"] += 1
            response = jsonify(error="invalid_token")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        stats["api_accepted"] += 1
        used_tokens.add(token)
        stats["api_tokens"] = len(used_tokens)
    return jsonify(
        sub=grant["sub"],
        client_id=grant["client_id"],
        scope=grant["scope"],
        method=request.method,
        path=request.full_path if request.query_string else request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
    )


@app.get("/__stats")
def get_stats():
    with lock:
        return jsonify(stats)


@app.get("/__last_assertion")
def get_last_assertion():
    with lock:
        return jsonify(last_assertion)


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


if __name__ == "__main__":
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    ISSUER = f"http://127.0.0.1:{httpd.server_port}"
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    sys.stdout.write(
        json.dumps({"issuer": ISSUER, "token_endpoint": ISSUER + "/token", "api": ISSUER + "/api"})
        + "\n"
    )
    sys.stdout.flush()
    httpd.serve_forever()
