"""moto (PyPI `moto`) as an AWS endpoint (S3, STS, IAM) on loopback for tests/interop/aws.rs,
with IAM authentication ON: every request must carry a SigV4 signature that moto recomputes
with the secret of the access key it names (botocore's `S3SigV4Auth` for S3, `SigV4Auth`
otherwise), and the key's policies must allow the action.

moto counts the requests it lets through unchecked and starts checking once the count reaches
`moto.settings.INITIAL_NO_AUTH_ACTION_COUNT` (the env var of that name; default infinity, i.e.
never). This script bootstraps with boto3 against its own server while it is infinite (any
key is accepted then), then sets it to 0 in-process: from the ready line on, nothing unsigned
or wrongly signed gets through.

Bootstrap:
  - IAM user `callout-interop` with an inline policy allowing s3:* and sts:GetCallerIdentity,
    and an access key for it (`AKIA...`);
  - role `callout-interop-role` (trusting the account) with the same policy, assumed by the
    user with sts:AssumeRole: temporary credentials (`ASIA...` key, secret, session token),
    which moto accepts only with that session token in `X-Amz-Security-Token`;
  - bucket `callout-interop` (us-east-1).

The server is moto's own (`ThreadedMotoServer`'s app and request handler) behind a small
WSGI wrapper that records each request's method, raw target, headers and answer status.

Once listening on 127.0.0.1 (a free port) it prints ONE JSON line on stdout:
  {"url", "region", "account", "user_arn", "access_key_id", "secret_access_key", "bucket",
   "role_arn", "session_arn", "session_access_key_id", "session_secret_access_key",
   "session_token"}
and exits when its stdin closes.

  GET /__requests   [{"method", "target" (path and query as they arrived), "headers"
                      {lower-case name: value}, "status"}] of every request since the ready
                      line, oldest first (no bucket name starts with `_`)
"""

import json
import logging
import os
import sys
import threading

import boto3
from botocore.config import Config
from moto import settings
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.datastructures import EnvironHeaders
from werkzeug.serving import make_server

# One line per request on stderr is noise in a test's output; errors still show.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

REGION = "us-east-1"
USER = "callout-interop"
ROLE = "callout-interop-role"
BUCKET = "callout-interop"
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity", "sts:AssumeRole"], "Resource": "*"}
        ],
    }
)

lock = threading.Lock()
recording = False
requests = []


def recorded(app):
    """`app`, recording every request once `recording` is on; serves GET /__requests."""

    def wrapper(environ, start_response):
        if environ.get("PATH_INFO") == "/__requests":
            with lock:
                body = json.dumps(requests).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if not recording:
            return app(environ, start_response)
        entry = {
            "method": environ.get("REQUEST_METHOD"),
            "target": environ.get("RAW_URI") or environ.get("PATH_INFO"),
            "headers": {k.lower(): v for k, v in EnvironHeaders(environ).items()},
            "status": None,
        }
        with lock:
            requests.append(entry)

        def record_status(status, headers, exc_info=None):
            entry["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        return app(environ, record_status)

    return wrapper


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def client(service, url, key_id, secret, token=None):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def bootstrap(url):
    iam = client("iam", url, "bootstrap", "bootstrap")
    user = iam.create_user(UserName=USER)["User"]
    iam.put_user_policy(UserName=USER, PolicyName="s3-and-whoami", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    account = user["Arn"].split(":")[4]
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:aws:iam::{account}:root", user["Arn"]]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    role = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName=ROLE, PolicyName="s3-and-whoami", PolicyDocument=POLICY)
    sts = client("sts", url, key["AccessKeyId"], key["SecretAccessKey"])
    assumed = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="callout")
    session = assumed["Credentials"]
    client("s3", url, key["AccessKeyId"], key["SecretAccessKey"]).create_bucket(Bucket=BUCKET)
    return {
        "account": account,
        "user_arn": user["Arn"],
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
        "bucket": BUCKET,
        "role_arn": role["Arn"],
        "session_arn": assumed["AssumedRoleUser"]["Arn"],
        "session_access_key_id": session["AccessKeyId"],
        "session_secret_access_key": session["SecretAccessKey"],
        "session_token": session["SessionToken"],
    }


if __name__ == "__main__":
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    # No checks while bootstrapping, whatever the environment says.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    app = recorded(DomainDispatcherApplication(create_backend_app))
    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    ready = bootstrap(url)
    # From here on every request must be signed with a key moto knows, and be allowed.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    recording = True
    ready.update(url=url, region=REGION)
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    threading.Event().wait()
