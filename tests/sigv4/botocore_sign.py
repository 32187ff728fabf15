"""Signs requests with botocore, for tests/it/sigv4.rs to compare callout's signatures with.

Reads one JSON request a line on stdin:
    {"method", "url" (absolute, path and query as on the wire), "headers": [[name, value]],
     "body" (base64), "unsigned" (bool: S3's UNSIGNED-PAYLOAD), "region", "service",
     "access_key_id", "secret_access_key", "session_token" (or null), "time" (Unix seconds)}
and prints one JSON line for each: the headers botocore set ("authorization", "x-amz-date",
"x-amz-content-sha256", "x-amz-security-token", lower-cased, null when absent) and its
"canonical_request", for a diagnosis when the two disagree.

botocore signs with `SigV4Auth` (`S3SigV4Auth` for s3) as it does for AWS's SDK calls. Three
things are set up around it, each the callout behaviour under test rather than a signer's
choice:
- which headers are signed: callout signs host, x-amz-*, content-type and content-md5, where
  botocore signs all but a few hop-by-hop names; `headers_to_sign` is narrowed to callout's set;
- x-amz-content-sha256 on every service: botocore's generic signer sends it only unsigned, so
  it gets botocore's own payload hash (`SigV4Auth.payload`) before signing;
- the query: botocore re-encodes `request.params`, but takes a query left in the URL as
  already canonical; the URL's query is parsed (`+` as a space, as form queries mean it)
  into params.
"""

import base64
import datetime
import json
import sys
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import botocore.auth
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials


class CalloutHeaders:
    """Signs what callout signs: host, x-amz-*, content-type, content-md5."""

    def headers_to_sign(self, request):
        chosen = HTTPHeaders()
        for name, value in super().headers_to_sign(request).items():
            if name == "host" or name.startswith("x-amz-") or name in ("content-type", "content-md5"):
                chosen[name] = value
        return chosen


class Generic(CalloutHeaders, SigV4Auth):
    pass


class S3(CalloutHeaders, S3SigV4Auth):
    pass


def sign(spec):
    now = datetime.datetime.fromtimestamp(spec["time"], datetime.timezone.utc).replace(tzinfo=None)
    # botocore reads the clock through this function when it signs.
    botocore.auth.get_current_datetime = lambda: now

    parts = urlsplit(spec["url"])
    request = AWSRequest(
        method=spec["method"],
        url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        params=parse_qsl(parts.query, keep_blank_values=True),
        data=base64.b64decode(spec["body"]),
    )
    for name, value in spec["headers"]:
        request.headers[name] = value  # appends: repeated headers stay, in order

    credentials = Credentials(spec["access_key_id"], spec["secret_access_key"], spec["session_token"])
    if spec["service"] == "s3":
        auth = S3(credentials, spec["service"], spec["region"])
        if spec["unsigned"]:
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    else:
        auth = Generic(credentials, spec["service"], spec["region"])
        if spec["unsigned"]:
            request.context["payload_signing_enabled"] = False
        else:
            del request.headers["X-Amz-Content-SHA256"]
            request.headers["X-Amz-Content-SHA256"] = auth.payload(request)
    auth.add_auth(request)

    out = {
        name: request.headers.get(name)
        for name in ("authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token")
    }
    out["canonical_request"] = auth.canonical_request(request)
    return out


def main():
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(sign(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
