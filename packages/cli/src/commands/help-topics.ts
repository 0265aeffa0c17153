// Help that is not about one command: `credproxy help oauth`. It ships in the
// package (dist), so hints can point at it instead of at a path in the repository.

export const OAUTH_HELP = `credproxy help oauth: configuring OAuth providers

\`credproxy auth login PROVIDER\` needs PROVIDER in providers.json, in the
credproxy config directory: $CREDPROXY_HOME/config/providers.json when
CREDPROXY_HOME is set, else ~/.config/credproxy/providers.json
($XDG_CONFIG_HOME/credproxy). The file stays on the host; a sandbox never sees it.

A worked example: GitHub, device flow (needs only a client id, no secret)
  1. On GitHub: Settings > Developer settings > OAuth Apps > New OAuth App
     (any homepage and callback URL), then tick "Enable Device Flow" and copy
     the Client ID.
  2. Save this as providers.json (replace the client_id):

{
  "providers": {
    "github": {
      "token_endpoint": "https://github.com/login/oauth/access_token",
      "device_authorization_endpoint": "https://github.com/login/device/code",
      "client_id": "Ov23liEXAMPLEclient",
      "scopes": ["repo", "read:org"],
      "flows": ["device_code"]
    }
  }
}

  3. Log in on the host, then use the token:
       credproxy auth login github
       credproxy run --grant github -- sh -c 'GH_TOKEN=$(credproxy token github) gh repo list'

Fields (one object per provider under "providers"):
  issuer                 discovery URL (/.well-known/openid-configuration); or give
                         the endpoints below when the server has no discovery
  token_endpoint         required without issuer
  device_authorization_endpoint   for the device_code flow without issuer
  authorization_endpoint for the pkce flow without issuer
  client_id              required
  client_secret          confidential clients only; stays on the host
  scopes                 e.g. ["openid", "offline_access"] (offline_access asks
                         for a refresh token where the server needs it)
  flows                  allowed flows in order: "device_code", "pkce"
                         (default both, device first; a login from a sandbox
                         uses the first)
  redirect_port          fixed loopback port for pkce (exact redirect URIs)
  poll_interval_ms       device-flow poll interval when the server sends none
  authorization_params   extra authorization request parameters, e.g. audience

A file that does not parse is an error naming the file and the field.
Plain http endpoints are accepted only on loopback addresses.
`

/** Topic name -> text, for `credproxy help TOPIC`. */
export const HELP_TOPICS: Readonly<Record<string, string>> = { oauth: OAUTH_HELP }

export function findHelpTopic(name: string): string | undefined {
  return Object.hasOwn(HELP_TOPICS, name) ? HELP_TOPICS[name] : undefined
}
