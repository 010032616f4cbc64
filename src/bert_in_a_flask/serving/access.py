"""Who may call: optional API keys and CORS, two Flask extensions, both off by default.

    API_KEYS=k1,k2 (or API_KEYS_FILE=path, one key per line)
        every route but OPEN_PATHS needs `Authorization: Bearer <key>`, else 401 JSON with
        `WWW-Authenticate: Bearer`. Keys are compared as SHA-256 digests in constant time (so neither
        which key nor its length shows in the time taken), each of them every time,
        and never logged (the call log records no headers but the user agent).
    CORS_ORIGINS=https://app.example.com,... (or *)
        browsers on those origins may call: answers carry Access-Control-Allow-Origin, and
        preflights (OPTIONS with Access-Control-Request-Method) are answered 204 without a key,
        as browsers send none with them. A preflight from another origin gets 403.
"""
import hashlib
import hmac
import os

from flask import current_app, request

from ..shared.errors import UserError

# Probes, and the API's description with its page (a browser cannot send a key to load a page).
OPEN_PATHS = ("/health_check", "/ready", "/openapi.json", "/v2/health/live", "/v2/health/ready", "/docs")
OPEN_PREFIXES = ("/docs/assets/",)
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
CORS_MAX_AGE_S = 600


class Unauthorized(UserError):
    def __init__(self, message):
        super(Unauthorized, self).__init__(message, 401)
        self.headers = {"WWW-Authenticate": 'Bearer realm="bert-in-a-flask"'}


def load_keys(keys, keys_file):
    """The keys of API_KEYS (comma-separated) and API_KEYS_FILE (one per line; # comments), as bytes."""
    found = [key.strip() for key in keys.split(",") if key.strip()]
    if keys_file:
        if not os.path.isfile(keys_file):
            raise UserError("API_KEYS_FILE %s does not exist" % keys_file)
        with open(keys_file, encoding="utf-8") as handle:
            found += [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise UserError("API_KEYS_FILE %s holds no key" % keys_file)
    return [key.encode("utf-8") for key in found]


class ApiKeys(object):

    def init_app(self, app):
        self.keys = load_keys(app.config["API_KEYS"], app.config["API_KEYS_FILE"])
        self.key_digests = [hashlib.sha256(key).digest() for key in self.keys]
        app.extensions["api_keys"] = self
        if self.keys:
            app.before_request(self.check)

    def accepts(self, token):
        # Digests of one length are compared, so the time taken tells nothing of a key's length
        # (compare_digest returns at once on a length mismatch), and every key is compared every time.
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        matched = False
        for key in self.key_digests:
            matched |= hmac.compare_digest(key, digest)
        return matched

    def check(self):
        if request.method == "OPTIONS" or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send an API key: Authorization: Bearer <key>")
        if not self.accepts(token.strip()):
            raise Unauthorized("the API key is not valid")
        return None


class Cors(object):

    def init_app(self, app):
        self.origins = [origin.strip().rstrip("/") for origin in app.config["CORS_ORIGINS"].split(",")
                        if origin.strip()]
        app.extensions["cors"] = self
        if self.origins:
            app.before_request(self.preflight)
            app.after_request(self.add_headers)

    def allowed(self, origin):
        return bool(origin) and ("*" in self.origins or origin.rstrip("/") in self.origins)

    def preflight(self):
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if not self.allowed(request.headers.get("Origin")):
            raise UserError("origin %r may not call this API (CORS_ORIGINS)" % request.headers.get("Origin", ""), 403)
        adapter = current_app.url_map.bind("")
        try:
            methods = sorted(adapter.allowed_methods(request.path))
        except Exception:  # an unknown path: say what the API has at most
            methods = ["GET", "POST"]
        response = current_app.make_response(("", 204))
        response.headers["Access-Control-Allow-Methods"] = ", ".join(m for m in methods if m != "HEAD")
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        return response

    def add_headers(self, response):
        origin = request.headers.get("Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in self.origins else origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID"
            if "*" not in self.origins:
                response.vary.add("Origin")
        return response
