// The e2e tests' OpenID provider: panva's oidc-provider (OpenID Certified), with its
// default consent rules (offline_access is granted only on a request that asks
// prompt=consent) and refresh-token rotation, one confidential client whose
// redirect_uri is the engine's callback, and its development interactions (a login
// form that takes any login, then a consent form), which the test drives over HTTP.
//
//   node server.mjs <config.json>
//
// The device authorization grant is on too (features.deviceFlow): its user-code, login,
// consent and confirmation pages are the development ones, driven the same way.
//
// config.json: {"port": 0, "client_id", "client_secret", "redirect_uris": [...],
// "access_token_ttl": seconds}. On listening it prints one JSON line to stdout:
// {"issuer": "http://127.0.0.1:<port>"}. GET /e2e/refresh-tokens lists the refresh
// tokens it issued, oldest first, so the test can see rotation and try a retired one.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const server = createServer();
server.listen(cfg.port || 0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: cfg.client_id,
      client_secret: cfg.client_secret,
      redirect_uris: cfg.redirect_uris,
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true, methods: ['S256'] },
    rotateRefreshToken: true,
    ttl: { AccessToken: cfg.access_token_ttl || 120 },
    // deviceFlow: RFC 8628 (device_authorization_endpoint /device/auth, verification at
    // /device), for the device authorization grant's test (e2e/device_test.go).
    features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
    cookies: { keys: ['e2e-cookie-key-not-a-secret'] },
    // The default findAccount: any login is an account whose sub is the login.
  });

  const issued = [];
  provider.on('refresh_token.saved', (token) => { issued.push(token.jti); });
  provider.on('server_error', (ctx, err) => { console.error('server_error', err); });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/e2e/refresh-tokens') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(issued));
      return;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
