// oauth2-mock-server as a client credentials token endpoint on loopback, for tests/interop.rs.
//
// Configuration comes as JSON in the environment variable MOCK_CONFIG:
//   {
//     "ttl": 3600,                        // seconds: the JWT's exp - iat and the answer's expires_in
//     "clients": { "client id": "secret" } // optional, see below
//   }
//
// oauth2-mock-server itself never authenticates clients: any Basic header or client_id /
// client_secret pair (or none) gets a token. When "clients" is given, this script adds the
// check a real server makes, decoding the credentials as RFC 6749 §2.3.1 says (Basic: split at
// the first ':', then application/x-www-form-urlencoded-decode both halves; body: the form
// fields), and answers 401 `invalid_client` on a mismatch. The token carries two extra claims
// so the resource server can tell what the token endpoint saw: `client_id` (decoded) and
// `client_auth` ("client_secret_basic" | "client_secret_post" | "none").
//
// Once listening on 127.0.0.1 (port 0 unless PORT is set) it prints ONE JSON line on stdout:
//   {"issuer", "token_endpoint", "jwks_uri", "introspection_endpoint"}
// `GET /__stats` answers {"token_requests", "tokens_issued", "rejected"}.
// It exits when its stdin closes.

import { OAuth2Server } from 'oauth2-mock-server';

const config = JSON.parse(process.env.MOCK_CONFIG ?? '{}');
const ttl = Number(config.ttl ?? 3600);
const clients = config.clients;

const stats = { token_requests: 0, tokens_issued: 0, rejected: 0 };

// RFC 6749 §2.3.1 / Appendix B: '+' is a space, then percent-decoding (UTF-8).
function formDecode(s) {
  return decodeURIComponent(s.replace(/\+/g, '%20'));
}

// What client the token request authenticated as, decoded as the RFC says.
function clientOf(req) {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^basic\s+(\S+)$/i.exec(header);
    if (!m) return { method: 'client_secret_basic', error: 'Authorization is not Basic' };
    const raw = Buffer.from(m[1], 'base64').toString('utf8');
    const i = raw.indexOf(':');
    if (i === -1) return { method: 'client_secret_basic', error: 'no colon in Basic credentials' };
    try {
      return {
        method: 'client_secret_basic',
        id: formDecode(raw.slice(0, i)),
        secret: formDecode(raw.slice(i + 1)),
      };
    } catch {
      return { method: 'client_secret_basic', error: 'Basic credentials are not form-urlencoded' };
    }
  }
  const body = req.body ?? {};
  if (body.client_id !== undefined) {
    return { method: 'client_secret_post', id: body.client_id, secret: body.client_secret };
  }
  return { method: 'none' };
}

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

server.service.on('beforeTokenSigning', (token, req) => {
  const client = clientOf(req);
  // oauth2-mock-server computes exp = floor(now) + 3600 whatever it is told; set our own.
  token.payload.exp = token.payload.iat + ttl;
  token.payload.client_id = client.id;
  token.payload.client_auth = client.method;
});

server.service.on('beforeResponse', (response, req) => {
  stats.token_requests += 1;
  const client = clientOf(req);
  if (clients !== undefined) {
    let why;
    if (client.error) why = client.error;
    else if (client.method === 'none') why = 'no client authentication';
    else if (!Object.hasOwn(clients, client.id) || clients[client.id] !== client.secret) {
      why = 'client authentication failed';
    }
    if (why) {
      stats.rejected += 1;
      response.statusCode = 401;
      response.body = { error: 'invalid_client', error_description: why };
      return;
    }
  }
  if (response.statusCode === 200) {
    stats.tokens_issued += 1;
    response.body.expires_in = ttl;
  }
});

server.service.addRoute('GET', '/__stats', (_req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(stats));
});

await server.start(Number(process.env.PORT ?? 0), '127.0.0.1');
// oauth2-mock-server names its issuer http://localhost:PORT even when bound to 127.0.0.1
// (and `localhost` may resolve to ::1 first): name the address it really listens on.
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
const issuer = server.issuer.url;

process.stdout.write(
  `${JSON.stringify({
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    introspection_endpoint: `${issuer}/introspect`,
  })}\n`,
);

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
