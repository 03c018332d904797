// Package oauth mints, refreshes and classifies OAuth 2.0 access tokens for
// the OAuth credential types. It imports no Vault package, and knows no type
// names: each OAuth type's preset (grant, endpoint templates, defaults) is a
// catalog entry in credtype, which this package reads and never the other way
// round, so the catalog stays free of the HTTP and x/oauth2 machinery here.
//
// FromFields turns a credential's fields into a Config by its type's preset.
// Client makes one bounded token request at a time through golang.org/x/oauth2:
// a timeout, a response size cap, redirects only on the same host, https except
// for loopback hosts (credtype.EndpointAllowed, the rule the catalog's URL
// fields follow too). Failures come back as *Error, classified as Permanent (the
// credential needs re-authorization) or Transient (retry later), with a
// message that never carries secrets or the provider's response body. Broker
// puts a single-flight, backoff and serve-stale policy around Client per
// credential key.
package oauth
