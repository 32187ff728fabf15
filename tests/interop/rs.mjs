// A resource server (the upstream behind callout) that accepts a request only with a valid
// JWT access token from one authorization server, verified with `jose` against that
// server's JWKS: signature (RS256), `iss`, `exp`/`nbf` (no clock tolerance), and, when
// configured, `aud` and the JOSE header `typ` (RFC 9068 `at+jwt`).
//
// Configuration comes as JSON in the environment variable RS_CONFIG:
//   { "issuer": "...", "jwks_uri": "...", "audience": "..." (optional), "typ": "..." (optional) }
//
// Every request but `GET /__stats` needs `Authorization: Bearer <jwt>`:
//   valid   -> 200 {"claims": {...}, "typ", "method", "path", "headers": every request header}
//   invalid -> 401 {"error": "invalid_token", "reason"} with WWW-Authenticate: Bearer
// `GET /__stats` -> {"accepted", "rejected", "reasons": {reason: count}, "tokens": distinct
// tokens accepted, "late": accepted at or after `exp` by the exact clock (the servers and jose
// count whole seconds, so this is information, not a failure)}.
//
// Once listening on 127.0.0.1 it prints ONE JSON line {"url"} on stdout, and it exits when
// its stdin closes.

import http from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const config = JSON.parse(process.env.RS_CONFIG ?? '{}');
const jwks = createRemoteJWKSet(new URL(config.jwks_uri));

const stats = { accepted: 0, rejected: 0, reasons: {}, tokens: 0, late: 0 };
const seen = new Set();

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function reject(res, reason) {
  stats.rejected += 1;
  stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
  send(res, 401, { error: 'invalid_token', reason }, {
    'www-authenticate': `Bearer error="invalid_token", error_description="${reason.replace(/["\\]/g, '')}"`,
  });
}

const server = http.createServer(async (req, res) => {
  req.resume();
  if (req.method === 'GET' && req.url === '/__stats') {
    send(res, 200, stats);
    return;
  }
  const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? '');
  if (!m) {
    reject(res, 'no bearer token');
    return;
  }
  const token = m[1];
  let payload;
  let header;
  try {
    ({ payload, protectedHeader: header } = await jwtVerify(token, jwks, {
      issuer: config.issuer,
      audience: config.audience ?? undefined,
      typ: config.typ ?? undefined,
      algorithms: ['RS256'],
      requiredClaims: ['exp', 'iat'],
    }));
  } catch (e) {
    reject(res, `${e.code ?? e.name}: ${e.message}`);
    return;
  }
  stats.accepted += 1;
  if (Date.now() >= payload.exp * 1000) stats.late += 1;
  if (!seen.has(token)) {
    seen.add(token);
    stats.tokens = seen.size;
  }
  send(res, 200, {
    claims: payload,
    typ: header.typ,
    method: req.method,
    path: req.url,
    headers: req.headers,
  });
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })}\n`);

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
