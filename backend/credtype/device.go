// The device authorization grant (RFC 8628): the oauth2_device_code type's own field,
// and what sets its preset apart from the authorization-code grant's. Both are
// authorized by a person and then refreshed through their refresh token; only the
// authorization-code grant has an authorization request (authorization_params,
// response_mode) and imports a refresh token obtained elsewhere.

package credtype

// GrantDeviceCode is the grant_type of RFC 8628's device access token request, and
// the preset grant of the device-code types.
const GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// FieldDeviceAuthorizationURL is the provider's device authorization endpoint.
const FieldDeviceAuthorizationURL = "device_authorization_url"

var deviceAuthorizationField = defineDeviceAuthorization()

func defineDeviceAuthorization() string {
	define(Field{Name: FieldDeviceAuthorizationURL, Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "Device authorization endpoint (RFC 8628 section 3.1), such as https://login.microsoftonline.com/<tenant>/oauth2/v2.0/devicecode " +
			"or GitHub's https://github.com/login/device/code. It receives the client's authentication, as the token endpoint does."})
	return FieldDeviceAuthorizationURL
}

// DeviceFlow reports whether t's credentials are authorized by the device
// authorization grant: credentials/<name>/authorize starts it, and the engine polls
// the token endpoint until the person has consented.
func (t *Type) DeviceFlow() bool {
	return t.OAuth != nil && t.OAuth.Grant == GrantDeviceCode
}

// codeFlow reports whether t's credentials are authorized by the authorization-code
// grant (a consent URL and the engine's callback).
func (t *Type) codeFlow() bool {
	return t.OAuth != nil && t.OAuth.Grant == "authorization_code"
}
