package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// deviceServer answers the device authorization endpoint (/device) and the token
// endpoint (/token) with canned answers, recording each request's form and
// Authorization header.
type deviceServer struct {
	*httptest.Server
	mu       sync.Mutex
	forms    []url.Values
	auths    []string
	device   func(w http.ResponseWriter)
	token    func(w http.ResponseWriter)
	accepted []string
}

func newDeviceServer(t *testing.T) *deviceServer {
	t.Helper()
	s := &deviceServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		s.mu.Lock()
		s.forms = append(s.forms, form)
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.accepted = append(s.accepted, r.Header.Get("Accept"))
		s.mu.Unlock()
		switch r.URL.Path {
		case "/device":
			s.device(w)
		case "/token":
			s.token(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *deviceServer) last() (url.Values, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forms[len(s.forms)-1], s.auths[len(s.auths)-1]
}

func (s *deviceServer) config(style, secret string) Config {
	return Config{Grant: GrantDeviceCode, TokenURL: s.URL + "/token", DeviceAuthorizationURL: s.URL + "/device",
		ClientID: "Iv1.client", ClientSecret: secret, AuthStyle: style, Scopes: []string{"repo", "gist"}}
}

func answerJSON(status int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func answerForm(body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}

// GitHub's documented device code answer (docs.github.com, "Authorizing OAuth apps",
// device flow step 1), as a form (its default) and as JSON (Accept: application/json).
const (
	githubDeviceCode     = "3584d83530557fdd1f46af8289938c8ef79f9dc5"
	githubDeviceForm     = "device_code=3584d83530557fdd1f46af8289938c8ef79f9dc5&expires_in=900&interval=5&user_code=WDJB-MJHT&verification_uri=https%3A%2F%2Fgithub.com%2Flogin%2Fdevice"
	githubDeviceJSON     = `{"device_code":"3584d83530557fdd1f46af8289938c8ef79f9dc5","user_code":"WDJB-MJHT","verification_uri":"https://github.com/login/device","expires_in":900,"interval":5}`
	githubAccessForm     = "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&token_type=bearer&scope=repo%2Cgist"
	githubAccessJSON     = `{"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a","token_type":"bearer","scope":"repo,gist"}`
	githubErrorURI       = "https://docs.github.com/developers/apps/authorizing-oauth-apps#error-codes-for-the-device-flow"
	providerDescription  = "DESCRIPTION-MUST-NOT-BE-ECHOED"
	entraDeviceCodeReply = `{"user_code":"FN4G8ZXYZ","device_code":"DAQABAAEAAAD--DLA3VO7QrddgJg7WevrEXAMPLE","verification_uri":"https://microsoft.com/devicelogin","expires_in":"900","interval":"5","message":"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FN4G8ZXYZ to authenticate."}`
)

func TestDeviceAuthorizeReadsProviderAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
		user   string
		uri    string
		expiry time.Duration
		every  time.Duration
	}{
		{"github form", answerForm(githubDeviceForm), "WDJB-MJHT", "https://github.com/login/device", 900 * time.Second, 5 * time.Second},
		{"github json", answerJSON(200, githubDeviceJSON), "WDJB-MJHT", "https://github.com/login/device", 900 * time.Second, 5 * time.Second},
		// Entra's v2.0 devicecode endpoint sends its numbers as strings.
		{"entra", answerJSON(200, entraDeviceCodeReply), "FN4G8ZXYZ", "https://microsoft.com/devicelogin", 900 * time.Second, 5 * time.Second},
		// Google calls it verification_url; no interval means 5 s (RFC 8628 section 3.2).
		{"google", answerJSON(200, `{"device_code":"AH-1Ng","user_code":"GQVQ-JKEC","verification_url":"https://www.google.com/device","expires_in":1800}`), "GQVQ-JKEC", "https://www.google.com/device", 1800 * time.Second, 5 * time.Second},
		// A hostile interval and expiry are held within bounds.
		{"bounded", answerJSON(200, `{"device_code":"GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS","user_code":"U-1","verification_uri":"https://idp.example/device","expires_in":1e12,"interval":0.001}`), "U-1", "https://idp.example/device", MaxDeviceExpiry, MinDeviceInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDeviceServer(t)
			s.device = tc.answer
			d, err := NewClient(ClientOptions{}).DeviceAuthorize(context.Background(), s.config(AuthStyleBody, ""))
			if err != nil {
				t.Fatal(err)
			}
			if d.UserCode != tc.user || d.VerificationURI != tc.uri || d.ExpiresIn != tc.expiry || d.Interval != tc.every || d.DeviceCode == "" {
				t.Fatalf("got %+v", d)
			}
			if strings.Contains(d.String(), d.DeviceCode) || strings.Contains(fmt.Sprintf("%#v", d), d.DeviceCode) {
				t.Fatalf("String shows the device code: %s", d)
			}
		})
	}
}

func TestDeviceAuthorizeAuthenticatesAsTokenRequests(t *testing.T) {
	t.Parallel()
	s := newDeviceServer(t)
	s.device = answerJSON(200, githubDeviceJSON)
	c := NewClient(ClientOptions{})
	ctx := context.Background()

	// Public client: client_id in the body, nothing else.
	if _, err := c.DeviceAuthorize(ctx, s.config("", "")); err != nil {
		t.Fatal(err)
	}
	form, auth := s.last()
	if form.Get("client_id") != "Iv1.client" || form.Has("client_secret") || auth != "" || form.Get("scope") != "repo gist" {
		t.Fatalf("public client sent %v, Authorization %q", form, auth)
	}
	if s.accepted[0] != "application/json" {
		t.Fatalf("Accept %q: GitHub answers a form otherwise", s.accepted[0])
	}
	// header: HTTP Basic, no secret in the body.
	if _, err := c.DeviceAuthorize(ctx, s.config(AuthStyleHeader, "s3cret")); err != nil {
		t.Fatal(err)
	}
	form, auth = s.last()
	if !strings.HasPrefix(auth, "Basic ") || form.Has("client_secret") {
		t.Fatalf("header style sent %v, Authorization %q", form, auth)
	}
	// body: both in the body.
	if _, err := c.DeviceAuthorize(ctx, s.config(AuthStyleBody, "s3cret")); err != nil {
		t.Fatal(err)
	}
	form, auth = s.last()
	if form.Get("client_secret") != "s3cret" || form.Get("client_id") != "Iv1.client" || auth != "" {
		t.Fatalf("body style sent %v, Authorization %q", form, auth)
	}
}

func TestDeviceAuthorizeRefusesUnusableAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, field string
		status            int
		code              string
		class             Class
	}{
		{"no device_code", `{"user_code":"A","verification_uri":"https://x.example/d","expires_in":900}`, "device_code", 200, CodeBadResponse, Transient},
		{"user code with markup", `{"device_code":"d","user_code":"<script>","verification_uri":"https://x.example/d","expires_in":900}`, "user_code", 200, CodeBadResponse, Transient},
		{"http verification uri", `{"device_code":"d","user_code":"A","verification_uri":"http://evil.example/d","expires_in":900}`, "verification_uri", 200, CodeBadResponse, Transient},
		{"javascript uri", `{"device_code":"d","user_code":"A","verification_uri":"https://x.example/d","verification_uri_complete":"javascript:alert(1)","expires_in":900}`, "verification_uri_complete", 200, CodeBadResponse, Transient},
		{"no expiry", `{"device_code":"d","user_code":"A","verification_uri":"https://x.example/d"}`, "expires_in", 200, CodeBadResponse, Transient},
		{"negative expiry", `{"device_code":"d","user_code":"A","verification_uri":"https://x.example/d","expires_in":-1}`, "expires_in", 200, CodeBadResponse, Transient},
		{"not json", `<html>` + providerDescription, "neither JSON", 200, CodeBadResponse, Transient},
		{"refused", `{"error":"invalid_client","error_description":"` + providerDescription + `"}`, "", 401, "invalid_client", Permanent},
		// GitHub answers an error with HTTP 200.
		{"github 200 error", `{"error":"device_flow_disabled","error_description":"` + providerDescription + `","error_uri":"` + githubErrorURI + `"}`, "", 200, "device_flow_disabled", Permanent},
		{"provider down", `{}`, "", 503, "http_503", Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDeviceServer(t)
			s.device = answerJSON(tc.status, tc.body)
			_, err := NewClient(ClientOptions{}).DeviceAuthorize(context.Background(), s.config(AuthStyleBody, "s3cret"))
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Class != tc.class {
				t.Fatalf("got %v, want %s (%s)", err, tc.code, tc.class)
			}
			if !strings.Contains(err.Error(), tc.field) || strings.Contains(err.Error(), providerDescription) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q should name %q and echo nothing of the answer or the secret", err, tc.field)
			}
		})
	}
}

// GitHub's documented answers of the device flow's token request (docs.github.com,
// "Error codes for the device flow"): every one with HTTP 200, as a form by default.
func TestPollDeviceGitHubAnswers(t *testing.T) {
	t.Parallel()
	gh := func(code string) string {
		return url.Values{"error": {code}, "error_description": {providerDescription}, "error_uri": {githubErrorURI}}.Encode()
	}
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
		code   string
		class  Class
	}{
		{"authorization_pending", answerForm(gh("authorization_pending")), CodeAuthorizationPending, Transient},
		{"slow_down", answerForm(gh("slow_down") + "&interval=10"), CodeSlowDown, Transient},
		{"slow_down json", answerJSON(200, `{"error":"slow_down","error_description":"`+providerDescription+`","interval":10}`), CodeSlowDown, Transient},
		{"expired_token", answerForm(gh("expired_token")), CodeExpiredToken, Permanent},
		{"access_denied", answerForm(gh("access_denied")), CodeAccessDenied, Permanent},
		{"unsupported_grant_type", answerForm(gh("unsupported_grant_type")), "unsupported_grant_type", Permanent},
		{"incorrect_client_credentials", answerForm(gh("incorrect_client_credentials")), "incorrect_client_credentials", Permanent},
		{"incorrect_device_code", answerForm(gh("incorrect_device_code")), "incorrect_device_code", Permanent},
		{"device_flow_disabled", answerJSON(200, `{"error":"device_flow_disabled","error_description":"`+providerDescription+`"}`), "device_flow_disabled", Permanent},
		// RFC 8628 section 3.5 servers answer 400.
		{"rfc authorization_pending", answerJSON(400, `{"error":"authorization_pending"}`), CodeAuthorizationPending, Transient},
		{"rfc slow_down", answerJSON(400, `{"error":"slow_down"}`), CodeSlowDown, Transient},
		{"rfc access_denied", answerJSON(400, `{"error":"access_denied"}`), CodeAccessDenied, Permanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDeviceServer(t)
			s.token = tc.answer
			_, err := NewClient(ClientOptions{}).PollDevice(context.Background(), s.config("", ""), githubDeviceCode)
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Class != tc.class {
				t.Fatalf("got %v, want %s (%s)", err, tc.code, tc.class)
			}
			if strings.Contains(err.Error(), providerDescription) || strings.Contains(err.Error(), githubDeviceCode) {
				t.Fatalf("error %q echoes the answer or the device code", err)
			}
		})
	}
}

// GitHub's slow_down names the interval to keep to from then on.
func TestPollDeviceSlowDownNamesTheInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
		want   time.Duration
	}{
		{"github form", answerForm("error=slow_down&error_description=x&interval=10"), 10 * time.Second},
		{"github json", answerJSON(200, `{"error":"slow_down","interval":15}`), 15 * time.Second},
		{"none named", answerJSON(400, `{"error":"slow_down"}`), 0},
		{"hostile", answerJSON(200, `{"error":"slow_down","interval":1e9}`), MaxDeviceInterval},
		{"not a number", answerJSON(200, `{"error":"slow_down","interval":"soon"}`), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDeviceServer(t)
			s.token = tc.answer
			_, err := NewClient(ClientOptions{}).PollDevice(context.Background(), s.config("", ""), "dc")
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeSlowDown || e.RetryAfter != tc.want {
				t.Fatalf("got %v (retry after %v), want slow_down naming %s", err, e, tc.want)
			}
		})
	}
}

func TestPollDeviceSuccessAndRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
	}{
		{"github form", answerForm(githubAccessForm)},
		{"github json", answerJSON(200, githubAccessJSON)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDeviceServer(t)
			s.token = tc.answer
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			tok, err := NewClient(ClientOptions{Now: func() time.Time { return now }}).PollDevice(context.Background(), s.config("", ""), githubDeviceCode)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "gho_16C7e42F292c6912E7710c838347Ae178B4a" || tok.Scope != "repo,gist" || !tok.IssuedAt.Equal(now) {
				t.Fatalf("token %v", tok)
			}
			form, _ := s.last()
			if form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || form.Get("device_code") != githubDeviceCode ||
				form.Get("client_id") != "Iv1.client" || form.Has("scope") {
				t.Fatalf("poll sent %v", form)
			}
		})
	}
	// With HTTP Basic, client_id is in the body too (GitHub requires it).
	s := newDeviceServer(t)
	s.token = answerJSON(200, `{"access_token":"at","token_type":"Bearer","expires_in":60,"refresh_token":"rt"}`)
	tok, err := NewClient(ClientOptions{}).PollDevice(context.Background(), s.config(AuthStyleHeader, "s3cret"), "dc")
	if err != nil || tok.RefreshToken != "rt" {
		t.Fatalf("%v %v", tok, err)
	}
	form, auth := s.last()
	if !strings.HasPrefix(auth, "Basic ") || form.Get("client_id") != "Iv1.client" || form.Has("client_secret") {
		t.Fatalf("header style poll sent %v, Authorization %q", form, auth)
	}
}

func TestPollDeviceRefusesWhatIsNotADeviceCode(t *testing.T) {
	t.Parallel()
	s := newDeviceServer(t)
	s.token = answerJSON(200, githubAccessJSON)
	c := NewClient(ClientOptions{})
	for _, code := range []string{"", "line\nbreak", strings.Repeat("a", 4097)} {
		if _, err := c.PollDevice(context.Background(), s.config("", ""), code); err == nil {
			t.Fatalf("device code %q accepted", code)
		}
	}
	cfg := s.config("", "")
	cfg.Grant = GrantClientCredentials
	if _, err := c.PollDevice(context.Background(), cfg, "dc"); err == nil {
		t.Fatal("a client-credentials config polled")
	}
	if len(s.forms) != 0 {
		t.Fatalf("%d requests sent", len(s.forms))
	}
}

func TestDeviceIntervals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want time.Duration }{
		{0, DefaultDeviceInterval}, {-time.Second, DefaultDeviceInterval}, {time.Millisecond, MinDeviceInterval},
		{7 * time.Second, 7 * time.Second}, {time.Hour, MaxDeviceInterval},
	} {
		if got := DeviceInterval(tc.in); got != tc.want {
			t.Errorf("DeviceInterval(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := SlowedDown(5 * time.Second); got != 10*time.Second {
		t.Errorf("SlowedDown(5s) = %s", got)
	}
	if got := SlowedDown(MaxDeviceInterval); got != MaxDeviceInterval {
		t.Errorf("SlowedDown(max) = %s", got)
	}
}
