// A local OpenID Provider for `make local AUTH_MODE=sso` and the tests: npm's
// `oidc-provider` (a certified implementation), configured from a JSON file
// that localrun/oidc.py writes. It plays the part Cognito (or a company IdP)
// plays when deployed:
//   - people sign in on its login page (authorization code flow with PKCE);
//     their ID token carries email, name and `groups`, the claim that makes
//     someone an MLflow admin or lets them in at all;
//   - code gets a JWT access token with the client-credentials grant, like a
//     Cognito app client: `sub` and `client_id` are the client's id, `aud` the
//     resource server's audience (the MLflow app client's id).
// Passwords are checked against the configured users (plain text in a
// private file: these are throw-away test users on loopback).
//
// Usage: node localrun/oidc_provider.mjs <config.json>
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users;

function passwordMatches(login, password) {
  const user = users[login];
  if (!user || typeof password !== 'string') return false;
  const given = Buffer.from(password);
  const expected = Buffer.from(user.password);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(config.issuer, {
  clients: config.clients,
  // Every process starts with a fresh signing key; tokens are short-lived.
  jwks: config.jwks,
  claims: {
    // Like Cognito's `cognito:groups`, the groups travel with every ID token.
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Put the granted scopes' claims into the ID token itself, as Cognito does.
  conformIdTokenClaims: false,
  extraClientMetadata: { properties: ['access_token_ttl'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Code (client credentials) gets a JWT for MLflow without naming it; a
      // person's sign-in keeps an opaque access token that only userinfo reads.
      defaultResource: async (ctx, client, oneOf) => (
        ctx.oidc.params?.grant_type === 'client_credentials' ? (oneOf || config.default_resource) : oneOf
      ),
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        const server = config.resource_servers[indicator];
        if (!server) throw new errors.InvalidTarget();
        return { scope: server.scope, audience: server.audience, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  ttl: {
    // A client may ask for short-lived tokens (the expiry tests use 1 s).
    ClientCredentials: (ctx, token, client) => client.metadata().access_token_ttl || 600,
    AccessToken: 600,
    IdToken: 600,
    Session: 3600,
    Grant: 3600,
    Interaction: 600,
  },
  findAccount: async (ctx, id) => {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        email: user.email,
        email_verified: true,
        name: user.name,
        preferred_username: id,
        groups: user.groups,
      }),
    };
  },
  // First-party app: no consent screen, the requested scopes are granted.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: config.cookie_keys },
  pkce: { required: () => false },
});
provider.proxy = false;

function loginPage(uid, message) {
  return `<!DOCTYPE html><html><head><title>Local identity provider: sign in</title></head><body>
<h1>Sign in (local identity provider)</h1>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="login" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

// The login page: the one interaction this provider needs (consent is implicit).
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET' && !match[2]) {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid);
    return undefined;
  }
  if (ctx.method === 'POST' && match[2]) {
    const form = await readForm(ctx.req);
    if (!passwordMatches(form.login, form.password)) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'Wrong username or password.');
      return undefined;
    }
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: form.login } }, { mergeWithLastSubmission: false });
    ctx.respond = false;
    return undefined;
  }
  return next();
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc provider: issuer ${config.issuer}, listening on 127.0.0.1:${config.port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
