#!/usr/bin/env python3
"""Write a callout config with N named credentials for the startup and routing benchmarks.

Usage: gen_config.py N LISTEN_PORT UPSTREAM_URL TOKEN_URL > config.toml

N - 1 generated named credentials `Api_00001`... each with its own external credential
(one principal each) precede the benchmark's own `up` credential, which comes last, so a
router that scanned the list would pay for all of them. N = 1 gives just `up`, the same as
bench/callout.toml. Secrets come from the environment (BENCH_CLIENT_SECRET).
"""
import sys


def main():
    n, port, upstream, token_url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        'default_permission_sets = ["Bench"]',
        "",
    ]
    for i in range(1, n):
        ext = f"Idp_{i:05d}"
        out += [
            f"[external_credentials.{ext}]",
            'protocol = "oauth2"',
            'flow = "client_credentials"',
            f'token_url = "{token_url}"',
            f'scope = "api.{i}"',
            "",
            f"[[external_credentials.{ext}.principals]]",
            f'name = "Svc_{i:05d}"',
            "sequence = 1",
            f'permission_sets = ["Bench", "Team_{i % 50:02d}"]',
            f'client_id = "client-{i:05d}"',
            'client_secret = { env = "BENCH_CLIENT_SECRET" }',
            "",
            f"[named_credentials.Api_{i:05d}]",
            f'url = "{upstream}/api/{i}"',
            f'external_credential = "{ext}"',
            "",
        ]
    out += [
        "[external_credentials.Bench_Idp]",
        'protocol = "oauth2"',
        'flow = "client_credentials"',
        f'token_url = "{token_url}"',
        "",
        "[[external_credentials.Bench_Idp.principals]]",
        'name = "Bench"',
        "sequence = 1",
        'permission_sets = ["Bench"]',
        'client_id = "bench"',
        'client_secret = { env = "BENCH_CLIENT_SECRET" }',
        "",
        "[named_credentials.up]",
        f'url = "{upstream}"',
        'external_credential = "Bench_Idp"',
        "",
    ]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
