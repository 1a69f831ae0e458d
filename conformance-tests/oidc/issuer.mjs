// Loopback OpenID Connect issuer for the FHIR server's black-box tests.
//
// Wraps the certified `oidc-provider` package. Issues RFC 9068 JWT access
// tokens for the client_credentials grant. See README.md.
//
// stdout carries exactly one line, `ready http://127.0.0.1:PORT`; every
// diagnostic (including oidc-provider notices, which it would otherwise print
// with console.info) goes to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

// Keep stdout clean for the ready line: route console.log/info to stderr
// *before* oidc-provider is loaded (it prints NOTICEs via console.info).
console.log = console.error;
console.info = console.error;

function fail(msg) {
  process.stderr.write(`issuer: ${msg}\n`);
  process.exit(2);
}

// --- configuration from the environment --------------------------------------

const port = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('PORT must be set to a TCP port number');

const keysFile = process.env.KEYS_FILE;
if (!keysFile) fail('KEYS_FILE must be set to a path');

let clientsEnv;
try {
  clientsEnv = JSON.parse(process.env.CLIENTS ?? '');
} catch {
  fail('CLIENTS must be a JSON array of {"client_id","client_secret"} objects');
}
if (!Array.isArray(clientsEnv) || clientsEnv.length === 0
  || !clientsEnv.every((c) => c && typeof c.client_id === 'string' && c.client_id
    && typeof c.client_secret === 'string' && c.client_secret)) {
  fail('CLIENTS must be a non-empty JSON array of {"client_id","client_secret"} objects');
}

const ttl = process.env.TTL === undefined || process.env.TTL === ''
  ? 300 : Number.parseInt(process.env.TTL, 10);
if (!Number.isInteger(ttl) || ttl <= 0) fail('TTL must be a positive integer (seconds)');

const issuer = `http://127.0.0.1:${port}`;

// Form parameters copied verbatim from the token request into the JWT.
const EXTRA_CLAIMS = ['fhirUser', 'patient', 'profession', 'organization', 'purpose_of_use', 'break_glass_reason'];

// --- signing keys ------------------------------------------------------------

function generateKeysFile(file) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: crypto.randomUUID(),
    use: 'sig',
    alg: 'RS256',
  };
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file); // atomic: a concurrent reader never sees a partial file
}

if (!fs.existsSync(keysFile)) generateKeysFile(keysFile);

let jwks;
try {
  jwks = JSON.parse(fs.readFileSync(keysFile, 'utf8'));
} catch (err) {
  fail(`cannot read KEYS_FILE ${keysFile}: ${err.message}`);
}
if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) fail(`KEYS_FILE ${keysFile} must be {"keys":[<private JWK>, ...]}`);
const signingKey = jwks.keys[0];
if (typeof signingKey.kid !== 'string' || !signingKey.kid) fail('the first key in KEYS_FILE must have a "kid"');
const signingAlg = signingKey.alg ?? 'RS256';

// --- minimal in-process adapter (avoids the "development-only adapter" warning)

const store = new Map();
class MapAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.exp !== undefined && entry.exp < Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUserCode() { return undefined; }

  async findByUid() { return undefined; }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId() {}
}

// --- provider ----------------------------------------------------------------

const { default: Provider, errors } = await import('oidc-provider');

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  jwks,
  clients: clientsEnv.map(({ client_id: clientId, client_secret: clientSecret }) => ({
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // client_secret_basic is accepted as well: oidc-provider treats the two
    // secret-based methods as interchangeable for a client registered with either.
    token_endpoint_auth_method: 'client_secret_post',
  })),
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: signingAlg,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clientBasedCORS: () => true,
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: false },
    revocation: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Every client_credentials request must name its audience.
      defaultResource: async () => {
        throw new errors.InvalidTarget('the resource parameter (absolute URL of the FHIR server) is required');
      },
      useGrantedResource: async () => false,
      // Any absolute resource URL is accepted; it becomes `aud`. The resource
      // server "supports" exactly the scopes requested, so the requested scope
      // string is granted verbatim (oidc-provider otherwise drops scopes the
      // resource server does not list).
      getResourceServerInfo: async (ctx, resourceIndicator) => ({
        audience: resourceIndicator,
        scope: typeof ctx.oidc.params.scope === 'string' ? ctx.oidc.params.scope : '',
        accessTokenTTL: ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: signingAlg, kid: signingKey.kid } },
      }),
    },
  },
  // oidc-provider only honours `extraParams` at the authorization endpoint and
  // strips unknown parameters from ctx.oidc.params at the token endpoint, so the
  // extra claims are read from the raw parsed form body instead.
  extraTokenClaims: async (ctx) => {
    const body = ctx?.oidc?.body ?? {};
    const claims = {};
    for (const name of EXTRA_CLAIMS) {
      const value = body[name];
      if (value === undefined) continue;
      if (typeof value !== 'string') throw new errors.InvalidRequest(`'${name}' parameter must only be provided once`);
      claims[name] = value;
    }
    return Object.keys(claims).length ? claims : undefined;
  },
  ttl: {
    AccessToken: ttl,
    ClientCredentials: ttl,
  },
  scopes: ['openid'],
  claims: { openid: ['sub'] },
});
provider.proxy = false;

// Log server-side failures (e.g. token signing errors) to stderr.
provider.on('server_error', (ctx, err) => { process.stderr.write(`issuer: server_error: ${err?.stack ?? err}\n`); });

const server = http.createServer(provider.callback());
server.on('error', (err) => fail(`listen on 127.0.0.1:${port} failed: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

const shutdown = () => { server.close(); process.exit(0); };
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
