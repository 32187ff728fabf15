// oidc-provider (OpenID Certified) as a client credentials authorization server on loopback,
// for tests/interop.rs.
//
// Configuration comes as JSON in the environment variable OIDC_CONFIG:
//   {
//     "ttl": 600,                      // seconds, every client credentials token (opaque or JWT)
//     "clients": [ { client metadata as oidc-provider takes it } ],
//     "resources": { "https://api.example/": { "scope": "api:read", "audience": "..." } }
//   }
// Resource indicators named in "resources" get JWT access tokens (RS256) whose `aud` is the
// entry's audience (default: the indicator itself); tokens without a resource are opaque and
// can be checked at the introspection endpoint.
//
// Once listening on 127.0.0.1 (port 0 unless PORT is set) it prints ONE JSON line on stdout:
//   {"issuer", "token_endpoint", "jwks_uri", "introspection_endpoint"}
// `GET /__stats` answers {"token_requests", "tokens_issued", "errors": {code: count},
// "introspections"}, and it exits when its stdin closes, so the test that spawned it can never leak it.

import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

// oidc-provider's NOTICE lines go to console.info (stdout): keep stdout for the ready line.
console.info = console.error;

const config = JSON.parse(process.env.OIDC_CONFIG ?? '{}');
const ttl = Number(config.ttl ?? 600);
const resources = config.resources ?? {};
const clients = config.clients ?? [];

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect any token (the test's resource server does).
    introspection: { enabled: true, allowedPolicy: async () => true },
    resourceIndicators: {
      enabled: true,
      // No resource in the request: an opaque token, not bound to any API.
      defaultResource: () => undefined,
      getResourceServerInfo: (_ctx, indicator) => {
        const rs = resources[indicator];
        if (!rs) {
          // oidc-provider turns this into `invalid_target`.
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: rs.scope ?? '',
          audience: rs.audience ?? indicator,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: () => ttl,
  },
  // Custom API scopes that clients may ask for without a resource indicator.
  scopes: config.scopes ?? ['openid', 'offline_access'],
});
// Plain http on loopback: oidc-provider only needs to know it is not behind a TLS proxy.
provider.proxy = false;

// What the token endpoint answered: GET /__stats (outside oidc-provider's routes).
const stats = { token_requests: 0, tokens_issued: 0, errors: {}, introspections: 0 };
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method !== 'POST') return;
  if (ctx.path === '/token') {
    stats.token_requests += 1;
    if (ctx.status === 200) stats.tokens_issued += 1;
    else {
      const code = ctx.body?.error ?? String(ctx.status);
      stats.errors[code] = (stats.errors[code] ?? 0) + 1;
    }
  } else if (ctx.path === '/token/introspection') {
    stats.introspections += 1;
  }
});

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
