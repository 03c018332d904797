// Package oauth mints, refreshes and classifies OAuth 2.0 access tokens for
// the OAuth credential types (oauth2_client_credentials, oauth2_password,
// oauth2_authorization_code and the m365, zoom, servicenow_oauth and
// cisco_client_credentials presets). It imports no Vault package.
//
// FromFields turns a credential's fields into a Config. Client makes one
// bounded token request at a time through golang.org/x/oauth2: a timeout, a
// response size cap, redirects only on the same host, https except for
// loopback hosts. Failures come back as *Error, classified as Permanent (the
// credential needs re-authorization) or Transient (retry later), with a
// message that never carries secrets or the provider's response body. Broker
// puts a single-flight, backoff and serve-stale policy around Client per
// credential key.
package oauth
