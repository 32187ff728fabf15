// oidc-provider (OpenID Certified) as an authorization server on loopback, for
// tests/interop.rs: client credentials with client secrets, private_key_jwt client assertions,
// tls_client_auth (RFC 8705) over HTTPS, and an RFC 8693 token exchange grant added here.
//
// Configuration comes as JSON in the environment variable OIDC_CONFIG:
//   {
//     "ttl": 600,                      // seconds, every client credentials token (opaque or JWT)
//     "exchange_ttl": 600,             // seconds, exchanged tokens (capped by the subject token's exp)
//     "clients": [ { client metadata as oidc-provider takes it, plus "keys" (below) } ],
//     "resources": { "https://api.example/": { "scope": "api:read", "audience": "..." } },
//     "tls": { "cert": "server.pem", "key": "server.key", "ca": "ca.pem" }   // optional
//   }
// A client's "keys": [{ "pem": "-----BEGIN ...", "kid": "k1" (optional) }] are PEM keys (public
// or private: only the public half is kept) turned into the client's `jwks`, for
// `token_endpoint_auth_method: "private_key_jwt"`. Client assertions may be signed with RS256,
// RS384, RS512, PS256, ES256 or ES384; oidc-provider checks the signature, `iss` = `sub` =
// client_id, `aud` (the issuer, the token endpoint URL), `exp`, and refuses a `jti` it has seen
// before (its ReplayDetection model, always on, in memory here).
//
// With "tls" it listens with HTTPS, asks every client for a certificate (verified against
// "ca", but a connection without one is still accepted for the other methods), and enables
// RFC 8705 `tls_client_auth` (clients with `tls_client_auth_subject_dn`, RFC 4514 string) and
// certificate-bound access tokens (`cnf.x5t#S256`, for clients with
// `tls_client_certificate_bound_access_tokens: true`). The issuer is then https://127.0.0.1:PORT.
//
// Resource indicators named in "resources" get JWT access tokens (RS256) whose `aud` is the
// entry's audience (default: the indicator itself); tokens without a resource are opaque and
// can be checked at the introspection endpoint.
//
// Token exchange (RFC 8693, grant_type urn:ietf:params:oauth:grant-type:token-exchange, for
// clients that list it in `grant_types`): `subject_token` must be a JWT this provider signed
// (an access token issued for a resource), unexpired, with `subject_token_type` access_token or
// jwt; `audience` or `resource` (one of "resources") picks the new token's audience (a JWT),
// neither gives an opaque token. The new token lives at most until the subject token's `exp`,
// names the exchanging client in `act.sub` and the subject token's `sub` in `subject_token_sub`;
// the answer has `issued_token_type` access_token.
//
// Once listening on 127.0.0.1 (port 0 unless PORT is set) it prints ONE JSON line on stdout:
//   {"issuer", "token_endpoint", "jwks_uri", "introspection_endpoint"}
// `GET /__stats` answers:
//   token_requests, tokens_issued, errors {code: count}, introspections,
//   by_client {client_id: {requests, issued}}, auth_methods {method: successful requests},
//   client_auth_failures {oidc-provider's detail: count} (e.g. "client assertion tokens must
//   only be used once", "alg mismatch"), replays (assertions refused as reused),
//   assertions (client assertions received), assertion_jtis (distinct jti among them),
//   last_assertions [{alg, kid, typ, iss, sub, aud, lifetime, jti_length}] (the last 50),
//   exchanges (tokens issued by token exchange), exchange_requests, exchange_subjects
//   (distinct subject tokens exchanged), exchange_errors {code: count}.
// It exits when its stdin closes, so the test that spawned it can never leak it.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';

// oidc-provider's NOTICE lines go to console.info (stdout): keep stdout for the ready line.
console.info = console.error;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

const config = JSON.parse(process.env.OIDC_CONFIG ?? '{}');
const ttl = Number(config.ttl ?? 600);
const exchangeTtl = Number(config.exchange_ttl ?? ttl);
const resources = config.resources ?? {};
const tls = config.tls;

// Client keys given as PEM become the client's JWKS (public keys only).
const clients = (config.clients ?? []).map(({ keys, ...metadata }) => {
  if (keys === undefined) return metadata;
  const jwks = {
    keys: keys.map(({ pem, kid }) => {
      const jwk = crypto.createPublicKey(pem).export({ format: 'jwk' });
      return kid === undefined ? jwk : { ...jwk, kid };
    }),
  };
  return { ...metadata, jwks };
});

// The provider's own signing key (JWT access tokens), generated per run; its public half
// also verifies subject tokens in the token exchange.
const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'oidc-interop',
  alg: 'RS256',
  use: 'sig',
};
const { d, p, q, dp, dq, qi, ...publicKey } = signingKey;
const ownKeys = createLocalJWKSet({ keys: [publicKey] });

const server = tls
  ? https.createServer({
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    ca: readFileSync(tls.ca),
    requestCert: true,
    rejectUnauthorized: false,
  })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

// RFC 4514 string of a certificate subject: node lists the RDNs most significant first, one a
// line; RFC 4514 writes them the other way round, comma-separated.
function rfc4514(subject) {
  return subject.split('\n').filter(Boolean).reverse().join(',');
}
const normalizeDn = (dn) => dn.split(',').map((rdn) => rdn.trim()).join(',');

function peerCertificate(ctx) {
  const socket = ctx.req.socket;
  if (!socket.authorized || typeof socket.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate();
}

const exchangeClaims = new WeakMap();

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
    ...(tls ? ['tls_client_auth'] : []),
  ],
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect any token (the test's resource server does).
    introspection: { enabled: true, allowedPolicy: async () => true },
    mTLS: {
      enabled: Boolean(tls),
      tlsClientAuth: true,
      certificateBoundAccessTokens: true,
      // Only a certificate the TLS layer verified against the configured CA.
      getCertificate: peerCertificate,
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => {
        const cert = peerCertificate(ctx);
        if (!cert) return false;
        switch (property) {
          case 'tls_client_auth_subject_dn':
            return normalizeDn(rfc4514(cert.subject)) === normalizeDn(expected);
          case 'tls_client_auth_san_dns':
            return (cert.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
          case 'tls_client_auth_san_ip':
            return (cert.subjectAltName ?? '').split(', ').includes(`IP Address:${expected}`);
          default:
            return false;
        }
      },
    },
    resourceIndicators: {
      enabled: true,
      // No resource in the request: an opaque token, not bound to any API.
      defaultResource: () => undefined,
      getResourceServerInfo: (_ctx, indicator) => resourceServer(indicator, ttl),
    },
  },
  ttl: {
    ClientCredentials: () => ttl,
  },
  // Claims of exchanged tokens (set by the token exchange grant below).
  extraTokenClaims: (_ctx, token) => exchangeClaims.get(token),
  // Custom API scopes that clients may ask for without a resource indicator.
  scopes: config.scopes ?? ['openid', 'offline_access'],
});
// Plain http on loopback: oidc-provider only needs to know it is not behind a TLS proxy.
provider.proxy = false;

function resourceServer(indicator, accessTokenTTL) {
  const rs = resources[indicator];
  if (!rs) {
    // oidc-provider turns this into `invalid_target`.
    throw new errors.InvalidTarget(`unknown resource ${indicator}`);
  }
  return {
    scope: rs.scope ?? '',
    audience: rs.audience ?? indicator,
    accessTokenTTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

// What the token endpoint answered: GET /__stats (outside oidc-provider's routes).
const stats = {
  token_requests: 0,
  tokens_issued: 0,
  errors: {},
  introspections: 0,
  by_client: {},
  auth_methods: {},
  client_auth_failures: {},
  replays: 0,
  assertions: 0,
  assertion_jtis: 0,
  last_assertions: [],
  exchanges: 0,
  exchange_requests: 0,
  exchange_subjects: 0,
  exchange_errors: {},
};
const jtis = new Set();
const subjects = new Set();
const bump = (map, key) => {
  map[key] = (map[key] ?? 0) + 1;
};

// A client assertion as received (decoded, not verified: oidc-provider verifies it).
function recordAssertion(assertion) {
  let header;
  let payload;
  try {
    header = decodeProtectedHeader(assertion);
    payload = decodeJwt(assertion);
  } catch {
    return;
  }
  stats.assertions += 1;
  if (typeof payload.jti === 'string') {
    jtis.add(payload.jti);
    stats.assertion_jtis = jtis.size;
  }
  stats.last_assertions.push({
    alg: header.alg,
    kid: header.kid,
    typ: header.typ,
    iss: payload.iss,
    sub: payload.sub,
    aud: payload.aud,
    lifetime: typeof payload.exp === 'number' && typeof payload.iat === 'number'
      ? payload.exp - payload.iat : null,
    nbf: payload.nbf !== undefined,
    jti_length: typeof payload.jti === 'string' ? payload.jti.length : null,
  });
  if (stats.last_assertions.length > 50) stats.last_assertions.shift();
}

provider.on('grant.error', (ctx, err) => {
  if (err.error === 'invalid_client') {
    const detail = err.error_detail ?? err.error_description ?? 'invalid_client';
    bump(stats.client_auth_failures, detail);
    if (/only be used once/.test(detail)) stats.replays += 1;
  }
  if (ctx.oidc?.params?.grant_type === TOKEN_EXCHANGE) bump(stats.exchange_errors, err.error);
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.method !== 'POST') return;
  if (ctx.path === '/token') {
    stats.token_requests += 1;
    const params = ctx.oidc?.params ?? {};
    if (typeof params.client_assertion === 'string') recordAssertion(params.client_assertion);
    const clientId = ctx.oidc?.client?.clientId ?? params.client_id ?? '(unknown)';
    stats.by_client[clientId] ??= { requests: 0, issued: 0 };
    stats.by_client[clientId].requests += 1;
    if (ctx.status === 200) {
      stats.tokens_issued += 1;
      stats.by_client[clientId].issued += 1;
      bump(stats.auth_methods, ctx.oidc.client.clientAuthMethod);
    } else {
      const code = ctx.body?.error ?? String(ctx.status);
      bump(stats.errors, code);
    }
  } else if (ctx.path === '/token/introspection') {
    stats.introspections += 1;
  }
});

// RFC 8693 token exchange. oidc-provider has no such grant; this one accepts this provider's
// own JWT access tokens as subject tokens.
provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const { params, client } = ctx.oidc;
    stats.exchange_requests += 1;
    if (!params.subject_token) {
      throw new errors.InvalidRequest("missing required parameter 'subject_token'");
    }
    if (!params.subject_token_type) {
      throw new errors.InvalidRequest("missing required parameter 'subject_token_type'");
    }
    if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.subject_token_type)) {
      throw new errors.InvalidRequest(`unsupported subject_token_type ${params.subject_token_type}`);
    }
    if (
      params.requested_token_type !== undefined
      && ![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.requested_token_type)
    ) {
      throw new errors.InvalidRequest(`unsupported requested_token_type ${params.requested_token_type}`);
    }
    if (params.actor_token !== undefined) {
      throw new errors.InvalidRequest('actor_token is not supported');
    }
    let subject;
    try {
      ({ payload: subject } = await jwtVerify(params.subject_token, ownKeys, {
        issuer,
        algorithms: ['RS256'],
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (e) {
      throw new errors.InvalidGrant(`subject_token is invalid (${e.code ?? e.name})`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (subject.exp <= now) throw new errors.InvalidGrant('subject_token is expired');

    const target = params.resource ?? params.audience;
    const exp = Math.min(now + exchangeTtl, subject.exp);
    const token = new provider.ClientCredentials({ client, expiresIn: exp - now });
    // iat and exp are fixed here: left to the token format, a second that ticks over before
    // the token is saved would let it outlive the subject token by one second.
    token.iat = now;
    token.exp = exp;
    exchangeClaims.set(token, { act: { sub: client.clientId }, subject_token_sub: subject.sub });
    if (target !== undefined) {
      const rs = resourceServer(target, exchangeTtl);
      token.resourceServer = { ...rs, identifier: () => target };
      const allowed = new Set(rs.scope.split(' '));
      const scope = (params.scope ?? '').split(' ').filter((s) => allowed.has(s)).join(' ');
      token.scope = scope || undefined;
    }
    const cert = client.tlsClientCertificateBoundAccessTokens ? peerCertificate(ctx) : undefined;
    if (cert) token.setThumbprint('x5t', cert);
    const value = await token.save();

    subjects.add(params.subject_token);
    stats.exchange_subjects = subjects.size;
    stats.exchanges += 1;
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  },
  [
    'subject_token', 'subject_token_type', 'requested_token_type', 'actor_token',
    'actor_token_type', 'audience', 'resource', 'scope',
  ],
);

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'GET' && req.url === '/__stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  callback(req, res);
});

process.stdout.write(
  `${JSON.stringify({
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    introspection_endpoint: `${issuer}/token/introspection`,
  })}\n`,
);

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
